"""The config's TOML read a job at a time (core/config_parse.py): the very document, or the
very error, tomllib.loads gives for the whole text; each job table at the line the key
scanner finds; and the memory that reading in pieces is for."""

from __future__ import annotations

import random
import tomllib
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
import tomli_w
from config_kit import issues_of, located, write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchkeeper.core.config import load_config
from watchkeeper.core.config_lines import KeyLines
from watchkeeper.core.config_parse import parse_toml


def whole(text: str) -> dict[str, object] | str:
    try:
        return tomllib.loads(text)
    except (ValueError, RecursionError) as exc:
        return f"{type(exc).__name__}: {exc}"


def in_pieces(text: str) -> dict[str, object] | str:
    try:
        return parse_toml(text).document
    except (ValueError, RecursionError) as exc:
        return f"{type(exc).__name__}: {exc}"


def assert_reads_as_whole(text: str) -> None:
    expected = whole(text)
    assert in_pieces(text) == expected, text
    if isinstance(expected, str):
        return
    job_lines = parse_toml(text).job_lines
    if job_lines is not None:
        scanned = KeyLines(text).scan()
        jobs = expected["jobs"]
        assert isinstance(jobs, dict)
        assert job_lines == {name: scanned[("jobs", name)] for name in jobs}


USUAL = """\
# a comment
[keeper]
max_parallel = 4

[jobs.a]
command = ["echo", "a"]
every = "1h"

[jobs.a.env]
X = "1"

[jobs.b-2]
command = "echo b"

[notify.ops]
url = "https://example.com"

[jobs.c]
command = "echo c"
after = ["a"]
"""


def test_the_usual_layout_is_read_in_pieces_and_reads_the_same() -> None:
    parsed = parse_toml(USUAL)
    assert parsed.job_lines == {"a": 5, "b-2": 12, "c": 18}
    assert parsed.document == tomllib.loads(USUAL)
    assert list(parsed.document) == ["keeper", "jobs", "notify"]
    assert_reads_as_whole(USUAL)


@pytest.mark.parametrize(
    "text",
    [
        # A header inside a multi-line string: the cut before it leaves a string open.
        '[keeper]\nnote = """\n[jobs.a]\ncommand = "x"\n[notify.b]\n"""\n',
        '[jobs.a]\ncommand = """\n[jobs.b]\ncommand = "y"\n"""\n',
        "[jobs.a]\ncommand = '''\n[jobs.b]\n'''\n",
        # ... or an array open.
        '[jobs.a]\ncommand = [\n"x",\n[jobs.b]\n]\n',
        # The same job twice, apart.
        '[jobs.a]\ncommand = "x"\n[jobs.b]\ncommand = "y"\n[jobs.a]\nretries = 1\n',
        '[jobs.a]\ncommand = "x"\n[jobs.b]\ncommand = "y"\n[jobs.a.env]\nX = "1"\n',
        # [jobs] itself, before, after, twice, indented, quoted.
        '[jobs]\n[jobs.a]\ncommand = "x"\n',
        '[jobs.a]\ncommand = "x"\n[jobs]\n',
        '[jobs.a]\ncommand = "x"\n  [jobs]\n[jobs.b]\ncommand = "y"\n  [jobs]\n',
        '[jobs.a]\ncommand = "x"\n["jobs"]\n[jobs.b]\ncommand = "y"\n["jobs"]\n',
        # Jobs written other ways.
        'jobs.a.command = "x"\n[jobs.b]\ncommand = "y"\n',
        'jobs = {a = {command = "x"}}\n[jobs.b]\ncommand = "y"\n',
        '[jobs.a]\ncommand = "x"\n[jobs."b"]\ncommand = "y"\n',
        '[jobs.a]\ncommand = "x"\n[ jobs.b ]\ncommand = "y"\n',
        '[jobs.a]\ncommand = "x"\n  [jobs.a.env]\nX = "1"\n',
        '[jobs.a]\ncommand = "x"\n[[jobs.a.hooks]]\nx = 1\n[[jobs.a.hooks]]\nx = 2\n',
        '[[jobs]]\nx = 1\n[jobs.a]\ncommand = "x"\n',
        # Keys that clash within a job, or with an inline table.
        '[jobs.a]\nenv = {X = "1"}\n[jobs.a.env]\nY = "2"\n',
        '[jobs.a]\nenv.X = "1"\n[jobs.a.env]\nY = "2"\n',
        '[jobs.a.env]\nX = "1"\n[jobs.a]\ncommand = "x"\n',
        '[jobs.a.env]\nX = "1"\n[jobs.b]\ncommand = "y"\n[jobs.a]\ncommand = "x"\n',
        # Tables outside jobs that clash across the jobs between them.
        '[notify]\nx = 1\n[jobs.a]\ncommand = "x"\n[notify]\ny = 2\n',
        '[notify.a]\nx = 1\n[jobs.a]\ncommand = "x"\n[notify.a.b]\ny = 2\n',
        'notify = 1\n[jobs.a]\ncommand = "x"\n[notify.a]\ny = 2\n',
        # Mistakes of every kind, at every place.
        '[jobs.a]\ncommand = "x\n[jobs.b]\ncommand = "y"\n',
        '[jobs.a]\ncommand = "x"\n[jobs.b]\ncommand = \n',
        '[jobs.a]\ncommand = "x"\n[jobs.b\ncommand = "y"\n',
        '[jobs.a]\ncommand = "x" "y"\n[jobs.b]\ncommand = "y"\n',
        "[jobs.a]\nretries = 1" + "0" * 5000 + '\n[jobs.b]\ncommand = "y"\n',
        "[jobs.a]\nx = " + "[" * 2000 + "]" * 2000 + '\n[jobs.b]\ncommand = "y"\n',
        # Line endings, blank documents, no jobs at all.
        '[jobs.a]\r\ncommand = "x"\r\n[jobs.b]\r\ncommand = "y"\r\n',
        "",
        "[keeper]\nmax_parallel = 2\n",
        '[jobs.a]\ncommand = "x"',
    ],
)
def test_documents_that_pieces_could_misread(text: str) -> None:
    assert_reads_as_whole(text)


_NAME = st.text(st.sampled_from(list("abXZ09_-. '\"")), min_size=1, max_size=5)
_LEAF = (
    st.integers(-5, 5)
    | st.booleans()
    | st.text(st.sampled_from(list("ab '\"\\\n#=[]{}.,")), max_size=12)
)
_VALUE = st.recursive(
    _LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_NAME, inner, max_size=3),
    max_leaves=8,
)
_TABLE = st.dictionaries(_NAME, _VALUE, max_size=4)


@st.composite
def _texts(draw: st.DrawFn) -> str:
    """Documents the way tomli_w writes them (jobs as [jobs.NAME] with their sub-tables),
    then often damaged: a character dropped, doubled or put in at a random place."""
    document: dict[str, object] = {
        "keeper": draw(_TABLE),
        "jobs": draw(st.dictionaries(_NAME, _TABLE, min_size=1, max_size=5)),
    }
    if draw(st.booleans()):
        document["notify"] = draw(st.dictionaries(_NAME, _TABLE, max_size=2))
    text = tomli_w.dumps(document, multiline_strings=draw(st.booleans()))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        change = draw(st.sampled_from(["drop", "double", "insert"]))
        if change == "drop":
            text = text[:at] + text[at + 1 :]
        elif change == "double":
            text = text[:at] + text[at : at + 1] + text[at:]
        else:
            text = text[:at] + draw(st.sampled_from(list("[]\"'\n=#{}.a"))) + text[at:]
    return text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_texts())
def test_any_document_reads_as_it_does_whole(text: str) -> None:
    assert_reads_as_whole(text)


def test_shuffled_lines_of_a_real_config_read_as_whole() -> None:
    lines = USUAL.splitlines(keepends=True)
    shuffle = random.Random(15)
    for _ in range(300):
        shuffle.shuffle(lines)
        assert_reads_as_whole("".join(lines))


def test_a_config_read_in_pieces_locates_its_jobs_and_problems(tmp_path: Path) -> None:
    text = USUAL.replace('[notify.ops]\nurl = "https://example.com"\n', "")
    config = load_config(write(tmp_path, text))
    assert {name: job.line for name, job in config.jobs.items()} == {"a": 5, "b-2": 12, "c": 16}
    bad = text.replace('command = "echo c"', 'command = "echo c"\nretries = "x"')
    issues = issues_of(tmp_path, bad)
    assert [located(issue) for issue in issues] == [(18, "jobs.c.retries")]


def jobs_text(jobs: int) -> str:
    return "".join(
        f'[jobs.j{i:05d}]\ncommand = ["/bin/true"]\nevery = "1h"\n\n' for i in range(jobs)
    )


def test_reading_in_pieces_holds_a_third_of_the_memory() -> None:
    """tomllib's bookkeeping for a whole document of 2,000 jobs peaks at over three times
    what it returns; a job at a time, well under twice."""
    text = jobs_text(2000)

    def peak(read: Callable[[str], object]) -> int:
        tracemalloc.start()
        try:
            read(text)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert peak(parse_toml) * 2 < peak(tomllib.loads)


def test_jobs_read_in_pieces_share_their_keys_and_string_values() -> None:
    jobs = parse_toml(jobs_text(3)).document["jobs"]
    first, second = (list(jobs[name].items()) for name in ("j00000", "j00001"))
    assert first == second == [("command", ["/bin/true"]), ("every", "1h")]
    assert all(a[0] is b[0] for a, b in zip(first, second, strict=True))
    assert first[1][1] is second[1][1]
