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


# The commands shell hooks and health checks call often start without the event loop
# machinery and the console: each of these costs tens of milliseconds at every call.
FAST_COMMANDS = [
    ["--status"],
    ["--status", "--json"],
    ["jobs"],
    ["jobs", "--json"],
    ["history", "--limit", "5"],
    ["history", "--json", "--status", "success"],
    ["stats", "--json"],
    ["pause", "sweeper"],
    ["resume", "sweeper"],
    ["logs", "-n", "5"],
    ["--version"],
]
HEAVY = ("asyncio", "textual", "core.keeper", "core.control")


def test_fast_cli_paths_import_no_asyncio_or_textual(tmp_path: Path) -> None:
    from core.vault import ensure_layout

    vault = tmp_path / "vault"
    ensure_layout(vault)
    (vault / "watchkeeper.toml").write_text('[jobs.sweeper]\ncommand = ["true"]\nevery = "5m"\n')
    cli = Path(sys.executable).parent / "watchkeeper"
    script = (
        "import json, runpy, sys\n"
        "sys.argv = ['watchkeeper', *json.loads(sys.argv[1])]\n"
        "try:\n"
        f"    runpy.run_path({str(cli)!r}, run_name='__main__')\n"
        "except SystemExit as end:\n"
        "    code = end.code\n"
        f"heavy = sorted(m for m in sys.modules if m in {HEAVY!r} or m.startswith('textual.'))\n"
        "print(json.dumps({'code': code, 'heavy': heavy}), file=sys.stderr)\n"
    )
    for args in FAST_COMMANDS:
        full = [*args, "--vault", str(vault)] if args != ["--version"] else args
        result = subprocess.run(
            [sys.executable, "-c", script, json.dumps(full)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
        report = json.loads(result.stderr.strip().splitlines()[-1])
        assert report["code"] in (0, 4, None), (args, result.stdout, result.stderr)
        assert report["heavy"] == [], args


def test_cli_modules_import_only_the_shared_helpers_never_each_other() -> None:
    """tui/cli.py registers the command modules; they share tui/cli_common.py and never
    import tui.cli or one another, and nothing takes a private name from another module."""
    import ast

    for path in sorted((ROOT / "tui").glob("cli*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or node.module is None:
                continue
            if node.module == "tui":  # `from tui import cli_x`: registration, in cli.py only
                assert path.name == "cli.py", (path, [alias.name for alias in node.names])
                continue
            if node.module.startswith("tui.cli"):
                assert node.module == "tui.cli_common", (path, node.module)
            private = [alias.name for alias in node.names if alias.name.startswith("_")]
            assert private == [], (path, node.module, private)
