"""Whole-file replacement: readers see the old file or the new one, never half of either."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """Write `text` (UTF-8) to `path` through a temp file beside it and os.replace.

    The file gets exactly `mode`, whatever the umask; without one, what any new file
    gets there (0666 less the umask, or a default ACL), like a note a Markdown app saves.

    The temp name starts with "." and ends in ".tmp" so vault watchers, Markdown apps and
    node_exporter's "*.prom" glob never pick up a half-written file. No fsync: these files
    are regenerated (dashboard, metrics) or small and rewritten on every change (state), so
    a power cut may cost the last update but the rename never exposes a torn file.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    while True:
        temp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
        try:
            # Created with the final mode (or less, by the umask) from the start: the text
            # is never readable by more than the file will be.
            fd = os.open(temp, flags, 0o666 if mode is None else mode)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            if mode is not None:
                os.fchmod(handle.fileno(), mode)
            handle.write(text)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
