"""Durations ("30s", "1h30m") and sizes ("5MB") as operators write them in config."""

from __future__ import annotations

import math
import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_duration(value: object) -> float:
    """Seconds from "30s", "5m", "1h30m", "500ms", "2d" or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '30s', '5m', '1h', got {brief(value)}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {brief(value)}")
        return _finite(value, value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like '30s', '5m', '1h', got {brief(value)}")
    text = value.strip().replace(" ", "").lower()
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"expected a duration like '30s', '5m', '1h30m', got {brief(value)}")
    return _finite(total, value)


def _finite(number: float, value: object) -> float:
    """`number` as a float; inf, nan and integers past a float's range are refused (a long
    string of digits reads as inf), so no timer is ever set from one."""
    try:
        seconds = float(number)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise ValueError(f"expected a finite duration, got {brief(value)}")
    return seconds


def brief(value: object) -> str:
    """repr() cut to one short line; a huge integer by its length (repr of one over 4,300
    digits raises)."""
    if isinstance(value, int) and value.bit_length() > 200:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_size(value: object) -> int:
    """Bytes from "5MB", "512K", "1GiB" (binary multiples, as logrotate reads them) or an int."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like '5MB', got {brief(value)}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative, got {brief(value)}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a size like '5MB', got {brief(value)}")
    match = _SIZE.fullmatch(value.strip())
    if not match:
        raise ValueError(f"expected a size like '512KB', '5MB', '1GB', got {brief(value)}")
    unit = match.group(2).lower().rstrip("b").rstrip("i")
    # A long string of digits reads as an inf float, which no int holds.
    size = float(match.group(1)) * _SIZE_UNITS[unit]
    if not math.isfinite(size):
        raise ValueError(f"size too large, got {brief(value)}")
    return int(size)


def format_duration(seconds: float) -> str:
    """Compact human form: 850ms, 12s, 4m05s, 3h20m, 2d04h."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 or seconds == int(seconds) else f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"
