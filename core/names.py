"""File names that are not valid UTF-8, carried end to end.

Python gives such a name as a str holding lone surrogates (surrogateescape: byte 0xE9
becomes U+DCE9), and hands it back to the OS as the same bytes (open, rename, a child's
environment). Two places cannot take a lone surrogate: UTF-8 text written for people,
and UTF-8 encoded JSON. These helpers serve each.
"""

from __future__ import annotations

import re
import shlex

_SURROGATE = re.compile("[\ud800-\udfff]")
# Also escaped in JSON lines: characters that str.splitlines() (and some editors) take
# for a line break, though JSON Lines breaks only at \n. A name may hold them.
_JSON_UNSAFE = re.compile("[\ud800-\udfff\x85\u2028\u2029]")


def shown(name: str) -> str:
    """The name for people: each byte that is not UTF-8 as U+FFFD."""
    # isascii() reads a flag CPython keeps on the string: most names skip the regex.
    return name if name.isascii() else _SURROGATE.sub("\ufffd", name)


def json_text(text: str) -> str:
    """JSON text (from json.dumps with ensure_ascii=False) made encodable as UTF-8, and
    one line to any reader: a lone surrogate, or a character str.splitlines() breaks at
    (U+0085, U+2028, U+2029), which only occur inside JSON strings, is written as its
    \\uXXXX escape. json.loads reads that back to the same str: names round-trip."""
    if text.isascii():
        return text
    return _JSON_UNSAFE.sub(lambda found: f"\\u{ord(found[0]):04x}", text)


def shell_word(text: str) -> str:
    """`text` as one word for a POSIX shell, in plain UTF-8 text. A name holding bytes that
    are not UTF-8, or control characters, is written in $'...' quoting (bash, zsh, ksh)
    with those as escapes, so the word still names the file exactly."""
    if not _SURROGATE.search(text) and text.isprintable():
        return shlex.quote(text)
    out = []
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char in "\\'":
            out.append("\\" + char)
        elif char.isprintable() and not _SURROGATE.match(char):
            out.append(char)
        else:
            wide = f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
            out.append(f"\\x{code:02x}" if code < 0x80 else wide)
    return "$'" + "".join(out) + "'"
