"""New history records as they are appended (`history -f`): the open segment is read
from where the last look ended, and the next UTC day's segment is picked up when it
appears. Reading files keeps this free of the keeper: it works with or without one."""

from __future__ import annotations

import json
import os
from pathlib import Path

from watchkeeper.core.history_format import SEGMENT_NAME, RunRecord

# A run that started before midnight (UTC) may write its final line to the older segment
# after the newer one exists: both stay watched.
WATCHED_SEGMENTS = 2


class HistoryFollower:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.bad_lines = 0
        self._positions: dict[Path, int] = {}
        self._pending: dict[Path, bytes] = {}
        for path in self._latest():
            self._positions[path] = _size(path)

    def _latest(self) -> list[Path]:
        try:
            names = sorted(
                entry.name
                for entry in os.scandir(self.directory)
                if SEGMENT_NAME.fullmatch(entry.name)
            )
        except FileNotFoundError:
            return []
        return [self.directory / name for name in names[-WATCHED_SEGMENTS:]]

    def poll(self) -> list[RunRecord]:
        """The records written since the last poll, in file order."""
        latest = self._latest()
        for path in list(self._positions):
            if path not in latest:
                del self._positions[path]
                self._pending.pop(path, None)
        records: list[RunRecord] = []
        for path in latest:
            # A segment that appeared after we started is read from its first line.
            position = self._positions.setdefault(path, 0)
            try:
                with path.open("rb") as file:
                    file.seek(position)
                    chunk = file.read()
            except FileNotFoundError:
                continue
            if not chunk:
                continue
            self._positions[path] = position + len(chunk)
            *lines, self._pending[path] = (self._pending.get(path, b"") + chunk).split(b"\n")
            for line in lines:
                record = _record(line)
                if record is not None:
                    records.append(record)
                elif line.strip():
                    self.bad_lines += 1
        return records


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _record(line: bytes) -> RunRecord | None:
    try:
        data = json.loads(line)
        return RunRecord.from_json(data) if isinstance(data, dict) else None
    except (ValueError, KeyError, TypeError):
        return None
