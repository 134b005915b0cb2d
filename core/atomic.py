"""Whole-file replacement: readers see the old file or the new one, never half of either."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` through a temp file beside it and os.replace.

    The temp name starts with "." and ends in ".tmp" so vault watchers, Markdown apps and
    node_exporter's "*.prom" glob never pick up a half-written file. No fsync: these files
    are regenerated (dashboard, metrics) or small and rewritten on every change (state), so
    a power cut may cost the last update but the rename never exposes a torn file.
    """
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            # mkstemp makes 0600; others (node_exporter, a notes app) must be able to read.
            os.fchmod(handle.fileno(), 0o644)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
