"""A run's output on its way to Logs/jobs/<job>.log: split into lines, secrets masked,
each line stamped with time and run id so one run's output can be picked out later."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, tzinfo

from watchkeeper.core.environment import Masker
from watchkeeper.core.logs import RotatingFile

# A child that never prints a newline still gets its output written in pieces about this
# big (never cut inside a secret, so a little more is held when one may straddle the cut).
MAX_PENDING = 65536


def _character_start(data: bytes, cut: int) -> int:
    """`cut`, moved back to the start of the UTF-8 character it would split in two."""
    for start in range(cut - 1, max(cut - 4, -1), -1):
        byte = data[start]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: the character began further back
        length = 4 if byte >= 0xF0 else 3 if byte >= 0xE0 else 2 if byte >= 0xC0 else 1
        return start if start + length > cut else cut
    return cut  # not UTF-8 here: any cut will do


def run_tag(run_id: str) -> str:
    return f"[{run_id}]"


class OutputSink:
    def __init__(
        self,
        log: RotatingFile,
        run_id: str,
        masker: Masker,
        tz: tzinfo,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.log = log
        self.tag = run_tag(run_id)
        self.masker = masker
        self.tz = tz
        self.on_line = on_line
        self._pending = b""
        self._opening: tuple[float, str] | None = None
        self.wrote = False

    def _stamp(self, moment: float | None = None) -> str:
        moment = time.time() if moment is None else moment
        return datetime.fromtimestamp(moment, self.tz).isoformat(timespec="milliseconds")

    def _write(self, data: bytes) -> None:
        if self._opening is not None:
            (moment, text), self._opening = self._opening, None
            data = f"{self._stamp(moment)} {self.tag} {text}\n".encode() + data
        self.log.write(data)
        self.wrote = True

    def open(self, text: str) -> None:
        """The run's first line of our own, written with its first output (or its end):
        a run that prints nothing and succeeds costs the log nothing, not even the stamp."""
        self._opening = (time.time(), text)

    def close(self, text: Callable[[], str], quiet_ok: bool) -> None:
        """The run's last line; left out (and `text` not even called) for a silent run
        when `quiet_ok`."""
        self.flush()
        if self.wrote or not quiet_ok:
            self._write(f"{self._stamp()} {self.tag} {text()}\n".encode())

    def note(self, text: str) -> None:
        """A line of the keeper's own about the run, between its output and its end."""
        self.flush()
        self._write(f"{self._stamp()} {self.tag} {text}\n".encode())

    def feed(self, data: bytes) -> None:
        data = self._pending + data
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) < MAX_PENDING:
            self._pending = data
            return
        if cut == 0:
            cut = _character_start(data, self.masker.safe_cut(data))
        self._pending = data[cut:]
        if cut == 0:
            return
        self._write_lines(data[:cut])

    def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, b""
            self._write_lines(pending)

    def _write_lines(self, chunk: bytes) -> None:
        text = self.masker(chunk.decode("utf-8", errors="replace"))
        prefix = f"{self._stamp()} {self.tag} "
        lines = text.splitlines()
        self._write("".join(f"{prefix}{line}\n" for line in lines).encode())
        if self.on_line is not None:
            for line in lines:
                self.on_line(line)
