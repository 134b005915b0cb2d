"""Console themes: TOML files holding textual.theme.Theme's fields, one theme a file.

Shipped ones live in the `themes` package; an operator's own in the user config dir
(watchkeeper/themes/). A broken file is reported and skipped, never fatal: a typo in a
theme must not keep an operator from the console.
"""

from __future__ import annotations

import contextlib
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from textual.color import Color, ColorParseError
from textual.css.constants import VALID_STYLE_FLAGS
from textual.theme import Theme

DEFAULT_THEME = "watchkeeper-dark"
COLOR_FIELDS = (
    "primary",
    "secondary",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
    "success",
    "warning",
    "error",
)
NUMBER_FIELDS = ("luminosity_spread", "text_alpha")
KNOWN = {"name", "dark", "variables", "ansi", *COLOR_FIELDS, *NUMBER_FIELDS}


class ThemeError(ValueError):
    """A theme file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class ThemeProblem:
    path: Path
    message: str

    def __str__(self) -> str:
        return f"theme {self.path}: {self.message}"


def _color(path: Path, key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ThemeError(f"{path}: {key}: expected a colour string, got {value!r}")
    try:
        Color.parse(value)
    except ColorParseError:
        raise ThemeError(f"{path}: {key}: {value!r} is not a colour") from None
    return value


_PERCENT = re.compile(r"\d{1,3}(\.\d+)?%")
_REFERENCE = re.compile(r"\$[a-z][a-z0-9-]*")


def _variable(path: Path, key: str, value: str, known: set[str]) -> None:
    """A variable goes straight into the CSS: a bad one would stop the console at the
    moment the theme is applied, so it is checked here. Names ending in "style" take
    text styles ("bold", "not underline"); the others a colour, a $reference or
    "auto", optionally with a percentage."""
    words = value.split()
    if "style" in key.split("-"):
        if words and all(word in VALID_STYLE_FLAGS for word in words):
            return
        raise ThemeError(f"{path}: variables.{key}: {value!r} is not a text style")
    if len(words) == 2 and _PERCENT.fullmatch(words[1]):
        words = words[:1]
    if len(words) == 1:
        word = words[0]
        if word in ("auto", "initial"):
            return
        if _REFERENCE.fullmatch(word):
            if word[1:] in known:
                return
            raise ThemeError(f"{path}: variables.{key}: {word} is no theme variable")
        with contextlib.suppress(ColorParseError):
            Color.parse(word)
            return
    raise ThemeError(f"{path}: variables.{key}: {value!r} is not a colour")


def parse_theme(text: str, path: Path) -> Theme:
    """A Theme from one file's text; ThemeError says what is wrong and where."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ThemeError(f"{path}: not valid TOML: {error}") from None
    unknown = sorted(set(data) - KNOWN)
    if unknown:
        raise ThemeError(f"{path}: unknown key(s) {', '.join(unknown)}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ThemeError(f"{path}: name: a theme needs a name")
    if "primary" not in data:
        raise ThemeError(f"{path}: primary: a theme needs a primary colour")
    fields: dict[str, object] = {
        key: _color(path, key, data[key]) for key in COLOR_FIELDS if key in data
    }
    for key in NUMBER_FIELDS:
        if key in data:
            value = data[key]
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ThemeError(f"{path}: {key}: expected a number, got {value!r}")
            fields[key] = float(value)
    for key in ("dark", "ansi"):
        if key in data:
            if not isinstance(data[key], bool):
                raise ThemeError(f"{path}: {key}: expected true or false, got {data[key]!r}")
            fields[key] = data[key]
    variables = data.get("variables", {})
    if not isinstance(variables, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in variables.items()
    ):
        raise ThemeError(f"{path}: variables: expected a table of strings")
    theme = Theme(name=name.strip(), **fields)  # type: ignore[arg-type]
    known = set(theme.to_color_system().generate()) | set(variables)
    for key, value in variables.items():
        _variable(path, key, value, known)
    theme.variables = dict(variables)
    return theme


def load_theme(path: Path) -> Theme:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ThemeError(f"{path}: cannot read: {error}") from None
    return parse_theme(text, path)


def shipped_dir() -> Path:
    return Path(str(resources.files("watchkeeper.themes")))


def discover(folders: list[Path]) -> tuple[list[Theme], list[ThemeProblem]]:
    """Every theme in `folders` (later folders override earlier ones by name), and the
    files that could not be used."""
    themes: dict[str, Theme] = {}
    problems: list[ThemeProblem] = []
    for folder in folders:
        try:
            paths = sorted(folder.glob("*.toml"))
        except OSError:
            continue
        for path in paths:
            try:
                theme = load_theme(path)
            except ThemeError as error:
                problems.append(ThemeProblem(path, str(error).removeprefix(f"{path}: ")))
                continue
            themes[theme.name] = theme
    return list(themes.values()), problems
