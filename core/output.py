"""A run's output on its way to Logs/jobs/<job>.log: split into lines, secrets masked,
each line stamped with time and run id so one run's output can be picked out later."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo

from core.environment import Masker
from core.logs import RotatingFile

# A child that never prints a newline still gets its output written in pieces this big.
MAX_PENDING = 65536


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

    def _stamp(self) -> str:
        return datetime.now(self.tz).isoformat(timespec="milliseconds")

    def note(self, text: str) -> None:
        """A line of our own (run started / ended) between the child's lines."""
        self.log.write(f"{self._stamp()} {self.tag} {text}\n".encode())

    def feed(self, data: bytes) -> None:
        data = self._pending + data
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) < MAX_PENDING:
            self._pending = data
            return
        if cut == 0:
            cut = len(data)
        self._pending = data[cut:]
        self._write_lines(data[:cut])

    def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, b""
            self._write_lines(pending)

    def _write_lines(self, chunk: bytes) -> None:
        text = self.masker(chunk.decode("utf-8", errors="replace"))
        prefix = f"{self._stamp()} {self.tag} "
        lines = text.splitlines()
        self.log.write("".join(f"{prefix}{line}\n" for line in lines).encode())
        if self.on_line is not None:
            for line in lines:
                self.on_line(line)
