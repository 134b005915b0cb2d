"""watchkeeper.toml read as text: a missing or non-UTF-8 file, every problem reported at
once in line order, and the scanner that finds each key's line (tomllib reports none)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import tomli_w
from config_kit import issues_of, located, write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchkeeper.core.config import CONFIG_NAME, ConfigError, load_config
from watchkeeper.core.config_lines import KeyLines


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / CONFIG_NAME
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [issue] = caught.value.issues
    assert (issue.path, issue.line, issue.key) == (path, 0, "<file>")
    assert str(path) in str(caught.value)


def test_non_utf8_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / CONFIG_NAME
    path.write_bytes(b'[jobs.a]\ncommand = "true"\ndescription = "caf\xe9"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [located(i) for i in caught.value.issues] == [(3, "<file>")]


# --- all problems at once ----------------------------------------------------------------------


def test_every_problem_is_reported_at_once_in_line_order(tmp_path: Path) -> None:
    issues = issues_of(
        tmp_path,
        """\
        [keeper]
        timezone = "Mars/Olympus"
        max_parallel = "four"

        [jobs.b]
        command = "true"
        after = ["nope"]

        [jobs.a]
        command = ["echo"]
        retries = -1
        overlap = "sometimes"
        colour = "red"

        [jobs.c]
        every = "soon"
        """,
    )
    assert [located(i) for i in issues] == [
        (2, "keeper.timezone"),
        (3, "keeper.max_parallel"),
        (7, "jobs.b.after"),
        (11, "jobs.a.retries"),
        (12, "jobs.a.overlap"),
        (13, "jobs.a.colour"),
        (15, "jobs.c.command"),
        (16, "jobs.c.every"),
    ]
    assert str(ConfigError(issues)).count("\n") == len(issues) - 1


# --- the line scanner ----------------------------------------------------------------------------


def test_keys_inside_multiline_strings_and_arrays_are_not_keys(tmp_path: Path) -> None:
    issues = issues_of(
        tmp_path,
        '''\
        [jobs.a]
        command = [
            "python3",  # retries = "not a key"
            "-c",
            """
        [jobs.fake]
        retries = "inside a string"
        """,
        ]
        description = """
        overlap = "sometimes"
        [keeper]
        text with \\""" and "" quotes """
        cwd = \'\'\'
        timeout = "x"
        [jobs.other]\'\'\'
        on_files = [
          "Inbox/*.md",
          # on_files = "/abs"
          { retries = "x" },
        ]
        retries = "three"
        env = { A = "1", B = 2, C = { D = "x" } }
        [jobs.b]
        command = "true"
        overlap = "queu"
        ''',
    )
    assert [located(i) for i in issues] == [
        (17, "jobs.a.on_files"),
        (22, "jobs.a.retries"),
        (23, "jobs.a.env.B"),
        (23, "jobs.a.env.C"),
        (26, "jobs.b.overlap"),
    ]


def test_dotted_and_quoted_keys(tmp_path: Path) -> None:
    issues = issues_of(
        tmp_path,
        """\
        [jobs]
        build.command = "make"
        build.retries = -1
        "deploy" . command = "true"
        'deploy'."timeout" = "never"

        [ jobs . "nightly.report" ]
        command = "true"
        "cron" = "not cron"
        env."A B" = 5

        [jobs.'lit\\eral']
        command = "true"
        "\\u0065very" = "later"
        """,
    )
    assert [located(i) for i in issues] == [
        (3, "jobs.build.retries"),
        (5, "jobs.deploy.timeout"),
        (9, 'jobs."nightly.report".cron'),
        (10, 'jobs."nightly.report".env."A B"'),
        (12, 'jobs."lit\\\\eral"'),
        (14, 'jobs."lit\\\\eral".every'),
    ]


def test_job_defined_by_dotted_keys_has_the_line_of_its_first_key(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[jobs]\n\na.command = "true"\na.retries = 1\n'))
    assert config.jobs["a"].line == 3


def test_super_table_declared_after_its_child(tmp_path: Path) -> None:
    issues = issues_of(
        tmp_path,
        """\
        [jobs.a.env]
        X = 1
        [jobs.a]
        command = "true"
        """,
    )
    assert [located(i) for i in issues] == [(2, "jobs.a.env.X")]
    config = load_config(write(tmp_path, '[jobs.a.env]\nX = "1"\n[jobs.a]\ncommand = "true"\n'))
    assert config.jobs["a"].line == 3


def test_crlf_line_endings(tmp_path: Path) -> None:
    path = tmp_path / CONFIG_NAME
    path.write_bytes(b'[jobs.a]\r\ncommand = "true"\r\n\r\nretries = "x"\r\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [located(i) for i in caught.value.issues] == [(4, "jobs.a.retries")]


_KEY_TEXT = st.text(st.sampled_from(list("abcXYZ019_-. '\"\\=#[]{}\n\tüλ")), min_size=1, max_size=6)
_LEAF = (
    st.integers()
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.text(st.sampled_from(list("ab '\"\\\n\t#=[]{}.,")), max_size=12)
    | st.datetimes()
)


def _documents() -> st.SearchStrategy[dict[str, object]]:
    values = st.recursive(
        _LEAF,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEY_TEXT, inner, max_size=3),
        max_leaves=12,
    )
    return st.dictionaries(_KEY_TEXT, values, max_size=5)


def _table_keys(table: dict[str, object], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for key, value in table.items():
        found.append((*prefix, key))
        if isinstance(value, dict):
            found.extend(_table_keys(value, (*prefix, key)))
    return found


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents())
def test_scanner_finds_every_key_tomli_w_writes(document: dict[str, object]) -> None:
    text = tomli_w.dumps(document, multiline_strings=True)
    lines = KeyLines(text).scan()
    source = text.split("\n")
    for keypath in _table_keys(tomllib.loads(text)):
        assert keypath in lines, (keypath, text)
        last = keypath[-1]
        if last.isalnum():
            assert last in source[lines[keypath] - 1], (keypath, text)
