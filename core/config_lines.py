"""Where things are in a config's TOML text: the line of each key, of a syntax error, and of
a value tomllib could not read. tomllib reports no positions, so this walks the text."""

from __future__ import annotations

import bisect
import re
import tomllib

KeyPath = tuple[str, ...]

_TOML_LOCATION = re.compile(r"\(at line (\d+), column (\d+)\)$")
_TOML_AT_END = "(at end of document)"


def syntax_error(exc: tomllib.TOMLDecodeError, text: str) -> tuple[int, str]:
    """The line of a TOML syntax error and its message, worded for a config file."""
    message = str(exc)
    located = _TOML_LOCATION.search(message)
    if located:
        return int(located.group(1)), f"{message[: located.start()]}(column {located.group(2)})"
    if message.endswith(_TOML_AT_END):
        return text.count("\n") + 1, message.removesuffix(_TOML_AT_END) + "(at end of file)"
    return 0, message


# Tokens that can hold brackets without nesting anything: strings and comments.
_NESTING_TOKEN = re.compile(
    r'"""(?:[^"\\]|\\.|"(?!""))*"""+|\'\'\'.*?\'\'\'+|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*'
    r"|[\[\]{}]",
    re.DOTALL,
)
_LONG_INTEGER = re.compile(r"[0-9][0-9_]{4299,}")


def unreadable_value(exc: BaseException, text: str, nesting: int) -> tuple[int, str]:
    """The line and wording for a value tomllib gave up on (it raises these outside
    TOMLDecodeError): arrays or tables nested deeper than it can recurse, or an integer
    longer than Python converts."""
    if isinstance(exc, RecursionError):
        line = _first_line_deeper_than(text, nesting)
        return line, "arrays or inline tables nested too deeply to read"
    if "integer string conversion" in str(exc):
        found = _LONG_INTEGER.search(text)
        line = text.count("\n", 0, found.start()) + 1 if found else 0
        return line, "an integer with over 4,300 digits"
    return 0, f"cannot read a value: {exc}"


def _first_line_deeper_than(text: str, limit: int) -> int:
    depth = 0
    for token in _NESTING_TOKEN.finditer(text):
        bracket = token.group()
        if bracket in "[{":
            depth += 1
            if depth > limit:
                return text.count("\n", 0, token.start()) + 1
        elif bracket in "]}":
            depth -= 1
    return 0


# The key scanner walks text tomllib has accepted (hence valid TOML) and notes where each key
# is defined. It never interprets values: it only skips them, so that strings and arrays
# spanning lines are never read as keys. It keeps nested arrays and inline tables on a stack
# of its own, not Python's, so no nesting tomllib accepts can exhaust the recursion limit.

_BLANK = re.compile(r"(?:[ \t\r\n]|#[^\n]*)*")
_SPACE = re.compile(r"[ \t]*")
_SCALAR = re.compile(r"[^,\]}\n#]*")
_BASIC_BODY = re.compile(r'(?:[^"\\\n]|\\.)*"')
_LITERAL_BODY = re.compile(r"[^'\n]*'")
# Up to two quotes may end the content right before the closing three: take the whole run.
_ML_BASIC_BODY = re.compile(r'(?:[^"\\]|\\.|"(?!""))*"""+', re.DOTALL)
_ML_LITERAL_BODY = re.compile(r"(?:[^']|'(?!''))*'''+")
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

# An open array or inline table: its closing character and, for a table, the path its
# keys live under.
_Open = tuple[str, KeyPath | None]


class KeyLines:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.lines: dict[KeyPath, int] = {}
        self.newlines = [match.start() for match in re.finditer("\n", text)]

    def scan(self) -> dict[KeyPath, int]:
        table: KeyPath = ()
        while True:
            self.skip(_BLANK)
            if self.pos >= len(self.text):
                return self.lines
            line = self.line()
            if self.text.startswith("[", self.pos):
                close = "]]" if self.text.startswith("[[", self.pos) else "]"
                self.pos += len(close)
                table = self.key()
                self.pos += len(close)
                self.record(table, line)
            else:
                self.value(self.assignment(table, line))

    def line(self) -> int:
        return bisect.bisect_left(self.newlines, self.pos) + 1

    def skip(self, pattern: re.Pattern[str], offset: int = 0) -> None:
        """Move past `pattern` matched `offset` characters on; it always matches valid TOML."""
        self.pos = pattern.match(self.text, self.pos + offset).end()  # type: ignore[union-attr]

    def record(self, keypath: KeyPath, line: int) -> None:
        # Tables a dotted key or header creates implicitly live where first mentioned;
        # an explicit definition (say [jobs] after [jobs.a]) takes over.
        for end in range(1, len(keypath)):
            self.lines.setdefault(keypath[:end], line)
        self.lines[keypath] = line

    def key(self) -> KeyPath:
        parts: list[str] = []
        while True:
            self.skip(_SPACE)
            start, first = self.pos, self.text[self.pos]
            if first == '"':
                self.skip(_BASIC_BODY, 1)
                # Let tomllib decode the escapes so the key matches its own exactly.
                parts.append(tomllib.loads("k = " + self.text[start : self.pos])["k"])
            elif first == "'":
                self.skip(_LITERAL_BODY, 1)
                parts.append(self.text[start + 1 : self.pos - 1])
            else:
                self.skip(BARE_KEY)
                parts.append(self.text[start : self.pos])
            self.skip(_SPACE)
            if not self.text.startswith(".", self.pos):
                return tuple(parts)
            self.pos += 1

    def assignment(self, table: KeyPath | None, line: int) -> KeyPath | None:
        """`key =`, up to its value; table None means inside an array, where keys have no
        fixed path. Returns the key's path (None inside an array)."""
        key = self.key()
        keypath = None if table is None else (*table, *key)
        if keypath is not None:
            self.record(keypath, line)
        self.pos += 1  # the "="
        self.skip(_SPACE)
        return keypath

    def value(self, keypath: KeyPath | None) -> None:
        open_: list[_Open] = []
        while True:
            text, pos = self.text, self.pos
            if text.startswith('"""', pos):
                self.skip(_ML_BASIC_BODY, 3)
            elif text.startswith("'''", pos):
                self.skip(_ML_LITERAL_BODY, 3)
            elif text[pos] == '"':
                self.skip(_BASIC_BODY, 1)
            elif text[pos] == "'":
                self.skip(_LITERAL_BODY, 1)
            elif text[pos] == "[":
                self.pos += 1
                open_.append(("]", None))
            elif text[pos] == "{":
                self.pos += 1
                open_.append(("}", keypath))
            else:
                self.skip(_SCALAR)
            item = self.next_item(open_)
            if item is None:
                return
            close, table = item
            keypath = None if close == "]" else self.assignment(table, self.line())

    def next_item(self, open_: list[_Open]) -> _Open | None:
        """Past separators and whatever closes here, to the next item of the innermost open
        array or table; None once the outermost value has ended."""
        while open_:
            self.skip(_BLANK)
            if self.text.startswith(",", self.pos):
                self.pos += 1
                self.skip(_BLANK)
            close, table = open_[-1]
            if not self.text.startswith(close, self.pos):
                return close, table
            self.pos += 1
            open_.pop()
        return None


class LazyKeyLines:
    """Each key's line as KeyLines finds it, the text scanned only when a key other than
    a job table is asked about: a valid config read in pieces (core/config_parse.py)
    brings its job tables' lines, and nothing else is asked of it. Scanning the text of
    10,000 jobs held ~6 MB of key paths at the config's peak."""

    def __init__(self, text: str, job_lines: dict[str, int] | None) -> None:
        self.text = text
        self.job_lines = job_lines or {}
        self.scanned: dict[KeyPath, int] | None = None

    def get(self, keypath: KeyPath) -> int | None:
        if self.scanned is None:
            if len(keypath) == 2 and keypath[0] == "jobs" and keypath[1] in self.job_lines:
                return self.job_lines[keypath[1]]
            self.scanned = KeyLines(self.text).scan()
        return self.scanned.get(keypath)
