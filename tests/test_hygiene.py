"""core/ stays headless: importing every core module never loads textual or rich."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import watchkeeper.core

ROOT = Path(__file__).resolve().parent.parent


def test_core_never_imports_textual_or_rich() -> None:
    # The prefix lets walk_packages import and descend into core/cluster/ and core/serve/.
    modules = sorted(
        info.name
        for info in pkgutil.walk_packages(watchkeeper.core.__path__, "watchkeeper.core.")
        if not info.name.startswith("watchkeeper.core.demo")
    )
    assert {
        "watchkeeper.core.keeper",
        "watchkeeper.core.runner",
        "watchkeeper.core.cluster.role",
        "watchkeeper.core.serve.app",
    } <= set(modules)
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "ui = ('textual', 'rich', 'watchkeeper.tui')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(ui))))\n"
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
            (
                "import textual",
                "from textual",
                "import rich",
                "from rich",
                "from watchkeeper.tui",
                "import watchkeeper.tui",
            )
        )
    ]
    assert offenders == []


# The quick commands shell hooks and health checks call often (tui/cli/fast.py) start
# without typer (and the pydantic and click under it), rich, the event loop machinery or
# the console: each of these costs tens of milliseconds at every call.
# croniter (and dateutil under it) too: cron_match finds a plain expression's next times.
# psycopg (and procrastinate) only with a [cluster] table: a one-host vault never loads them.
NEVER_QUICK = (
    *("typer", "click", "rich", "pydantic", "asyncio", "textual", "croniter", "dateutil"),
    *("psycopg", "procrastinate"),
)
NEVER_QUICK_CORE = (
    "watchkeeper.core.keeper",
    "watchkeeper.core.control_server",
    "watchkeeper.core.events",
)
# What a local run of a plain job (no limits, no isolation, no http, no notifications)
# never uses at the keeper's start, so each is imported where it is used: an item's
# triage and a resume's plan (asked of a serving keeper), the vault watchers (serve()),
# difflib (a mistyped name's hint), the host's limits probe (jobs with limits; shutil,
# with bz2 and lzma, under it), git worktrees (isolated jobs), how notifications are
# sent (a keeper with channels), the parsers of the [cluster] table, of an http job's
# tables and of the [notify] channels (a config with them), and ssl: only an http job's
# https calls use TLS on the loop (tui/cli/run.py imports asyncio without it otherwise).
NEVER_LOCAL_RUN = (
    *("watchkeeper.core.triage", "watchkeeper.core.resume", "watchkeeper.core.watchers"),
    *("watchkeeper.core.dirwatch", "difflib", "shutil", "getpass", "ctypes"),
    *("watchkeeper.core.limits_host", "watchkeeper.core.worktree"),
    *("watchkeeper.core.notify_mask", "watchkeeper.core.notify_send"),
    *("watchkeeper.core.config_cluster", "watchkeeper.core.config_http"),
    *("watchkeeper.core.config_notify", "ssl", "_ssl"),
)
QUICK_WITHOUT_KEEPER = [
    ["--status"],
    ["--status", "--json"],
    [],  # no terminal: the status
    ["jobs"],
    ["jobs", "--json"],
    ["history", "--limit", "50"],
    ["history", "--json", "--status", "success", "--job", "sweeper", "--since", "1h"],
    ["stats", "--json"],
    ["pause", "sweeper"],
    ["resume", "sweeper", "--preview"],
    ["resume", "sweeper"],
    ["cancel", "nothing"],
]
QUICK_WITH_KEEPER = [
    ["--status"],
    ["jobs"],
    ["jobs", "--json"],
    ["history", "--limit", "50"],
    ["pause", "sweeper"],
    ["resume", "sweeper", "--preview"],
    ["resume", "sweeper"],
    ["run", "sweeper"],
    ["run", "sweeper", "--wait"],
    ["run", "sweeper", "--wait", "--follow"],
    ["cancel", "nothing"],
]
SWEEPER = '[jobs.sweeper]\ncommand = ["true"]\nevery = "5m"\n'
NIGHTLY = '[jobs.nightly]\ncommand = ["true"]\ncron = "0 3 * * 1-5"\n'


def cli_report(args: list[str], cwd: Path) -> dict[str, Any]:
    """The real entry point run in a fresh interpreter, stdout a pipe: its exit `code`,
    every module it imported (those of the interpreter's own start included), and
    whether the cyclic garbage `collector` was on at its end and anything `frozen`."""
    cli = Path(sys.executable).parent / "watchkeeper"
    script = (
        "import gc, json, os, runpy, sys\n"
        "sys.argv = ['watchkeeper', *json.loads(sys.argv[1])]\n"
        # A quick command ends with os._exit (tui/cli/main.py): here it ends in the report.
        "def ended(code):\n"
        "    raise SystemExit(code)\n"
        "os._exit = ended\n"
        "code = 0\n"
        "try:\n"
        f"    runpy.run_path({str(cli)!r}, run_name='__main__')\n"
        "except SystemExit as end:\n"
        "    code = end.code\n"
        "report = {'code': code, 'modules': sorted(sys.modules), 'collector': gc.isenabled(),\n"
        "          'frozen': gc.get_freeze_count() > 0}\n"
        "print(json.dumps(report), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    report: dict[str, Any] = json.loads(result.stderr.strip().splitlines()[-1])
    return report


def imported_by_cli(args: list[str], cwd: Path) -> tuple[int | None, set[str]]:
    report = cli_report(args, cwd)
    return report["code"], set(report["modules"])


def forbidden(modules: set[str], packages: tuple[str, ...], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in packages or m in names)


def quick_vault(tmp_path: Path) -> Path:
    from watchkeeper.core.vault import ensure_layout

    vault = tmp_path / "vault"
    ensure_layout(vault)
    (vault / "watchkeeper.toml").write_text(SWEEPER + NIGHTLY)
    return vault


def test_quick_commands_without_a_keeper_import_no_typer_rich_or_asyncio(tmp_path: Path) -> None:
    vault = quick_vault(tmp_path)
    for args in QUICK_WITHOUT_KEEPER:
        code, modules = imported_by_cli([*args, "--vault", str(vault)], tmp_path)
        assert code in (0, 2, 4), args  # cancel with no keeper: exit 2
        assert forbidden(modules, NEVER_QUICK, NEVER_QUICK_CORE) == [], args
        assert "watchkeeper.tui.cli.fast" in modules and "watchkeeper.tui.cli.app" not in modules, (
            args
        )
    # A local run is the keeper's work in this process, asyncio and all; still no typer,
    # no HTTP client (urllib.request, http.client, email: ~10 ms) for notifications it
    # has none to send of, and none of what its plain job does not need.
    code, modules = imported_by_cli(["run", "sweeper", "--vault", str(vault)], tmp_path)
    assert code == 0
    assert "watchkeeper.core.keeper" in modules and "asyncio" in modules
    local = ("typer", "click", "rich", "pydantic", "textual", "psycopg", "procrastinate")
    unused = ("urllib.request", *NEVER_LOCAL_RUN)
    assert forbidden(modules, (*local, "http", "email"), unused) == []


def test_a_local_run_offers_tls_on_the_loop_where_an_http_job_may_need_it(
    tmp_path: Path,
) -> None:
    """asyncio is imported without ssl only when no job could call an https endpoint
    through the loop: with an http job in the vault, a local run of any job has it."""
    vault = quick_vault(tmp_path)
    with (vault / "watchkeeper.toml").open("a") as config:
        config.write('[jobs.probe]\nhttp = { url = "https://example.invalid/" }\n')
    code, modules = imported_by_cli(["run", "sweeper", "--vault", str(vault)], tmp_path)
    assert code == 0 and {"asyncio", "ssl"} <= modules


def test_quick_commands_through_a_keeper_import_no_typer_rich_or_asyncio(
    tmp_path: Path, daemon
) -> None:
    vault = quick_vault(tmp_path)
    daemon(vault)
    for args in QUICK_WITH_KEEPER:
        code, modules = imported_by_cli([*args, "--vault", str(vault)], tmp_path)
        assert code in (0, 2), args  # cancel of no such run: exit 2
        assert forbidden(modules, NEVER_QUICK, NEVER_QUICK_CORE) == [], args
        assert "watchkeeper.tui.cli.app" not in modules, args
        # history reads the files on its own; the others ask the keeper, and read no
        # history (resume prints the keeper's plan without the quota that made it)
        assert ("watchkeeper.core.control_client" in modules) == (args[0] != "history"), args
        assert ("watchkeeper.core.history" in modules) == (args[0] == "history"), args
        assert "watchkeeper.core.quota" not in modules, args


def test_the_collector_runs_again_for_what_may_go_on_for_long(tmp_path: Path, daemon) -> None:
    """Quick commands start with the cyclic collector off (tui/cli/main.py): a run in this
    process, or one waited for or followed, may last hours and turns it back on; the
    others end with it off and their objects frozen, out of the exit's collections."""
    vault = quick_vault(tmp_path)
    at = ["--vault", str(vault)]
    local = cli_report(["run", "sweeper", *at], tmp_path)
    assert (local["code"], local["collector"]) == (0, True)
    for args in (["jobs"], ["--status"], ["history", "--limit", "5"], ["pause", "sweeper"]):
        report = cli_report([*args, *at], tmp_path)
        assert (report["collector"], report["frozen"]) == (False, True), args
    typer = cli_report(["logs", "-n", "1", *at], tmp_path)
    assert (typer["code"], typer["collector"], typer["frozen"]) == (0, True, False)
    daemon(vault)
    for args in (["run", "sweeper", "--wait"], ["run", "sweeper", "--wait", "--follow"]):
        report = cli_report([*args, *at], tmp_path)
        assert (report["code"], report["collector"]) == (0, True), args
    started = cli_report(["run", "sweeper", *at], tmp_path)  # not waited for: it returns
    assert (started["code"], started["collector"]) == (0, False)


def test_other_commands_go_to_typer_still_without_asyncio_or_textual(tmp_path: Path) -> None:
    vault = quick_vault(tmp_path)
    for args in (["logs", "-n", "5", "--vault", str(vault)], ["--version"], ["jobs", "-h"]):
        code, modules = imported_by_cli(args, tmp_path)
        assert code == 0, args
        assert "watchkeeper.tui.cli.app" in modules, args
        assert forbidden(modules, ("asyncio", "textual"), ("watchkeeper.core.keeper",)) == [], args


# The entry point and the two parsers of the command line, which dispatch to the command
# modules; what each of them may import of tui's command line.
CLI_DISPATCH = {
    "main.py": {
        "watchkeeper.tui.cli.common",
        "watchkeeper.tui.cli.fast",
        "watchkeeper.tui.cli.app",
        "watchkeeper.tui.cli.method_cache",
    },
    "app.py": {"watchkeeper.tui.cli.common", "watchkeeper.tui.cli.options"},
    "fast.py": {"watchkeeper.tui.cli.common"},
}
SHARED = {"watchkeeper.tui.cli.common", "watchkeeper.tui.cli.options"}


def test_cli_modules_import_only_the_shared_helpers_never_each_other() -> None:
    """tui/cli/app.py (typer) and tui/cli/fast.py (the quick path) dispatch to the command
    modules; those share tui/cli/common.py and tui/cli/options.py and never import the
    package's entry point, a parser or one another, and nothing takes a private name from
    another module."""
    for path in sorted((ROOT / "tui" / "cli").glob("*.py")):
        allowed = CLI_DISPATCH.get(path.name, SHARED)
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or node.module is None:
                continue
            if node.module == "watchkeeper.tui.cli":  # `from ..cli import x`: dispatch
                assert path.name in ("app.py", "fast.py"), (path, node.names[0].name)
                continue
            if node.module.startswith("watchkeeper.tui.cli"):
                assert node.module in allowed, (path, node.module)
            private = [alias.name for alias in node.names if alias.name.startswith("_")]
            assert private == [], (path, node.module, private)


# ---- import circles -------------------------------------------------------------------


def _module_name(path: Path, root: Path, prefix: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return prefix + ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(
    packages: tuple[str, ...], root: Path = ROOT, prefix: str = "watchkeeper."
) -> dict[str, set[str]]:
    """Every import between modules of `packages` (folders in `root`), wherever it stands
    (top level, in a function, under TYPE_CHECKING): module -> the modules it imports."""
    paths = {
        _module_name(path, root, prefix): path
        for pkg in packages
        for path in (root / pkg).rglob("*.py")
    }
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from core import history` imports core.history; `from core.x import y`
                # imports core.x (and core.x.y when that is a module).
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            graph[name] |= {target for target in targets if target in paths and target != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_a_circle_through_a_function_level_or_type_only_import_is_found(
    tmp_path: Path,
) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg import b\n")
    (package / "b.py").write_text("from pkg.c import g\n")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import f\n"
    )
    (package / "d.py").write_text("import pkg.a\n")
    graph = import_graph(("pkg",), tmp_path, prefix="")
    assert graph["pkg.a"] == {"pkg", "pkg.b"} and graph["pkg.c"] == {"pkg.a"}
    assert circles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles_in_core_or_tui() -> None:
    """Walks every import of core/ and tui/, wherever it stands (top level, in a function,
    under TYPE_CHECKING): none closes a circle, not even for the type checker."""
    graph = import_graph(("core", "tui"))
    assert {
        "watchkeeper.core.cluster.role",
        "watchkeeper.core.serve.app",
        "watchkeeper.tui.cli.app",
        "watchkeeper.tui.widgets.table",
    } <= set(graph)
    assert circles(graph) == []
    # The control socket stands apart from the keeper: the keeper may use the protocol's
    # shapes, never the server, client or connections; those never import the keeper.
    assert not graph["watchkeeper.core.keeper"] & {
        "watchkeeper.core.control_server",
        "watchkeeper.core.control_client",
        "watchkeeper.core.control_conn",
    }
    control = {name for name in graph if name.startswith("watchkeeper.core.control")}
    assert not {"watchkeeper.core.keeper"} & set().union(*(graph[name] for name in control))
