"""core/ stays headless: importing every core module never loads textual or rich."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import core

ROOT = Path(__file__).resolve().parent.parent


def test_core_never_imports_textual_or_rich() -> None:
    modules = sorted(
        f"core.{info.name}"
        for info in pkgutil.walk_packages(core.__path__)
        if not info.name.startswith("demo")
    )
    assert "core.keeper" in modules and "core.runner" in modules
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "ui = ('textual', 'rich', 'tui')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ui)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert json.loads(result.stdout) == []


def test_no_core_source_names_textual() -> None:
    offenders = [
        str(path)
        for path in (ROOT / "core").rglob("*.py")
        for line in path.read_text().splitlines()
        if line.strip().startswith(
            ("import textual", "from textual", "import rich", "from rich", "from tui", "import tui")
        )
    ]
    assert offenders == []
