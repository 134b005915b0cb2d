"""The methods `@dataclass` writes, compiled once and kept beside the bytecode, for the
quick commands (tui/cli/main.py installs it while they import and work).

`@dataclass` writes each class's `__init__`, `__repr__`, `__eq__`... as Python source
and compiles it at every import, where the rest of a module comes from its cached
bytecode: a local `run` imports some 45 dataclasses, and their ~190 compiles were some
15 ms of its 115. Here the `exec` that module calls finds the code compiled from the
same source by an earlier command. The source text is the key, so a class whose fields
changed misses and is compiled as before, and a hit is exactly what compile() gives.
The file sits where this module's bytecode goes (`__pycache__`, or PYTHONPYCACHEPREFIX),
headed by the interpreter's bytecode magic, and is written as bytecode is (never with
PYTHONDONTWRITEBYTECODE); one that cannot be read or written is no cache.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import marshal
import os
import sys
from importlib.util import MAGIC_NUMBER, cache_from_source
from types import CodeType
from typing import Any

NAME = "dataclass_methods"
MOST = 2000  # entries; past it, only those the last command used are kept


def cache_path() -> str | None:
    try:
        bytecode = cache_from_source(__file__)
    except NotImplementedError:  # no bytecode cache in this interpreter
        return None
    return os.path.join(os.path.dirname(bytecode), f"{NAME}.{sys.implementation.cache_tag}")


class MethodCache:
    def __init__(self, path: str | None) -> None:
        self.path = path
        self.code: dict[str, CodeType] = self._read()
        self.used: set[str] = set()
        self.missed = 0

    def _read(self) -> dict[str, CodeType]:
        if self.path is None:
            return {}
        try:
            with open(self.path, "rb") as file:
                data = file.read()
            if data[: len(MAGIC_NUMBER)] != MAGIC_NUMBER:
                return {}
            code = marshal.loads(data[len(MAGIC_NUMBER) :])
        except (OSError, ValueError, EOFError, TypeError):
            return {}
        if not isinstance(code, dict):
            return {}
        return {k: v for k, v in code.items() if isinstance(k, str) and isinstance(v, CodeType)}

    def exec(self, source: Any, globals: Any = None, locals: Any = None) -> None:
        if not isinstance(source, str):
            builtins.exec(source, globals, locals)
            return
        code = self.code.get(source)
        if code is None:
            # dont_inherit: compiled as dataclasses' own exec compiles it, without the
            # __future__ flags of this module (annotations would become strings).
            code = self.code[source] = compile(source, "<string>", "exec", dont_inherit=True)
            self.missed += 1
        self.used.add(source)
        builtins.exec(code, globals, locals)

    def install(self) -> None:
        # The name dataclasses looks up before the builtin, so only its exec goes here.
        vars(dataclasses)["exec"] = self.exec

    def uninstall(self) -> None:
        if vars(dataclasses).get("exec") == self.exec:
            del vars(dataclasses)["exec"]

    def close(self) -> None:
        """Uninstalled, saved, and forgotten: what is left compiles as ever."""
        self.uninstall()
        self.save()
        self.code, self.used, self.missed = {}, set(), 0

    def save(self) -> None:
        """Keep what this command compiled, if anything (atomically: a command that
        reads meanwhile sees the old file or the new one)."""
        if not self.missed or self.path is None or sys.dont_write_bytecode:
            return
        keep = self.code
        if len(keep) > MOST:
            keep = {source: self.code[source] for source in self.used}
        temporary = f"{self.path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(temporary, "wb") as file:
                file.write(MAGIC_NUMBER + marshal.dumps(keep))
            os.replace(temporary, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            return
        self.missed = 0


def installed() -> MethodCache:
    cache = MethodCache(cache_path())
    cache.install()
    return cache
