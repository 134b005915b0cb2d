"""tui/cli/method_cache.py: the methods @dataclass writes, compiled once and kept beside
the bytecode for the quick commands: a class made from the cache is the class made
without it, a file that will not do is no cache, and the real CLI writes it once and
reads it after."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI

from watchkeeper.tui.cli.method_cache import NAME, MethodCache

# A module of its own, without `from __future__ import annotations` (as dataclasses
# compiles the methods: none of this file's __future__ flags).
CLASSES = """\
from dataclasses import dataclass, field

@dataclass(frozen=True, order=True)
class Point:
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)

@dataclass(slots=True, order=True)
class Box:
    low: Point
    high: Point
"""


def made(tmp_path: Path, cache: MethodCache | None) -> dict[str, Any]:
    """Point and Box built from CLASSES (through `cache` when given), and what shows
    how they behave."""
    namespace: dict[str, Any] = {"__name__": "made"}
    if cache is not None:
        cache.install()
    try:
        exec(compile(CLASSES, str(tmp_path / "made.py"), "exec", dont_inherit=True), namespace)
    finally:
        if cache is not None:
            cache.uninstall()
    point, box = namespace["Point"], namespace["Box"]
    one = point(1, tags=["a"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.x = 2
    return {
        "annotations": [repr(point.__init__.__annotations__), repr(box.__init__.__annotations__)],
        "doc": [point.__doc__, box.__doc__],
        "repr": repr(box(one, point(3, 4))),
        "eq": (one == point(1, 0, ["a"]), one == point(2)),
        "hash": hash(point(1, 2, ())) == hash((1, 2, ())),
        "order": box(point(0), point(1)) < box(point(1), point(0)) < box(point(1), point(2)),
        "default": point(5).tags is not point(5).tags,
        "slots": box.__slots__,
        "qualname": point.__init__.__qualname__,
    }


@pytest.fixture
def clean_dataclasses(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # whatever this run was given
    yield
    assert "exec" not in vars(dataclasses)


def test_a_class_from_the_cache_is_the_class_without_it(
    tmp_path: Path, clean_dataclasses: None
) -> None:
    path = str(tmp_path / NAME)
    plain = made(tmp_path, None)
    first = MethodCache(path)
    assert made(tmp_path, first) == plain and first.missed > 0
    first.save()
    second = MethodCache(path)
    assert made(tmp_path, second) == plain and second.missed == 0 and second.used
    # Evaluated as dataclasses evaluates them, not left strings by this file's __future__.
    assert plain["annotations"][0] == repr({"x": int, "y": int, "tags": list[str], "return": None})


def test_a_file_that_will_not_do_is_no_cache(tmp_path: Path, clean_dataclasses: None) -> None:
    path = tmp_path / NAME
    plain = made(tmp_path, None)
    for content in (b"", b"not marshal at all", b"\x00" * 64, b"stale magic" + b"{" * 20):
        path.write_bytes(content)
        cache = MethodCache(str(path))
        assert cache.code == {}
        assert made(tmp_path, cache) == plain
    written = MethodCache(str(path))
    made(tmp_path, written)
    written.save()
    other_python = path.read_bytes()
    path.write_bytes(b"\xff\xff" + other_python[2:])  # another interpreter's magic
    assert MethodCache(str(path)).code == {}
    blocked = MethodCache(str(tmp_path / "a-file" / NAME))
    (tmp_path / "a-file").write_text("a file where the folder would be")
    made(tmp_path, blocked)
    blocked.save()  # cannot be written: no cache, no error
    assert not list(tmp_path.glob("a-file*/*"))


def test_no_cache_written_where_no_bytecode_is(
    tmp_path: Path, clean_dataclasses: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    cache = MethodCache(str(tmp_path / NAME))
    made(tmp_path, cache)
    cache.save()
    assert not (tmp_path / NAME).exists()


def test_the_cli_writes_the_cache_once_and_reads_it_after(make_vault, tmp_path: Path) -> None:
    vault = make_vault('[jobs.hello]\ncommand = ["true"]\n')
    prefix = tmp_path / "pycache"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPYCACHEPREFIX=str(prefix), NO_COLOR="1")
    command = [str(CLI), "run", "hello", "--vault", str(vault)]
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert first.returncode == 0, first.stderr
    (cache,) = prefix.rglob(f"{NAME}.*")
    written = cache.stat().st_mtime_ns
    loaded = MethodCache(str(cache)).code
    assert any("def __init__" in source for source in loaded)
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert again.returncode == 0, again.stderr
    for done in (first, again):
        assert done.stdout.startswith("✔ success  hello  run ") and "(locally)" in done.stdout
    assert cache.stat().st_mtime_ns == written  # every method was found: nothing to save
    quiet = {**env, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(tmp_path / "no")}
    assert subprocess.run(command, capture_output=True, env=quiet, timeout=60).returncode == 0
    assert not (tmp_path / "no").exists()
