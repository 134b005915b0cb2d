"""The `watchkeeper` command. Exit codes: 0 ok, 1 a job failed, 2 usage or config error,
3 another keeper holds the vault, 4 no keeper running (--status).

The quick commands (tui/cli/fast.py) run without typer; everything else builds the typer
app (tui/cli/app.py), which registers one module per command group. tests/test_hygiene.py
holds each quick command to what it may not import.

The cyclic garbage collector is off while a quick command imports and works: the
hundreds of classes and functions an import makes are never garbage, yet each
collection walks them all (a quick command is a few tens of milliseconds, and these
passes were a tenth of it). A command that may go on for long (a run in this process, a
run waited for) turns the collector back on first (common.settle). A quick command ends
with os._exit once its output is flushed, without the interpreter's own ending (its last
collections, every module torn down); when another thread still runs, or the output
cannot be flushed, it ends as ever, its objects frozen out of those collections.

While a quick command runs, the methods @dataclass writes come compiled from an earlier
command (tui/cli/method_cache.py); the typer app's commands compile them as ever."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable
from typing import NoReturn


def main() -> None:
    gc.disable()
    from watchkeeper.tui.cli.method_cache import installed

    methods = installed()
    code: int | str | None
    try:
        code = _logs_checked(_quick)
    except SystemExit as end:  # a quick command's exit code, or its `raise fail(...)`
        code = 0 if end.code is None else end.code
    finally:
        methods.close()  # not kept for the life of a keeper or the console
    if code is None:
        # The console, the keeper and the rest run as long as they like: the collector
        # runs for them as ever.
        gc.enable()
        _logs_checked(_typer)
    if not gc.isenabled():
        gc.freeze()
    _leave(code)


def _logs_checked(work: Callable[[], int | None]) -> int | None:
    from watchkeeper.core.logsdir import LogsAccessError
    from watchkeeper.tui.cli.common import fail

    try:
        return work()
    except LogsAccessError as error:
        # Another user's private Logs/, or a disk that refuses: which file, not a traceback.
        raise fail(str(error)) from None


def _quick() -> int | None:
    """A quick command's exit code; None when it is not one, for typer."""
    from watchkeeper.tui.cli.common import detach_stdout
    from watchkeeper.tui.cli.fast import quick

    try:
        return quick(sys.argv[1:])
    except KeyboardInterrupt:
        # As click ends a command Ctrl-C interrupted.
        print("\nAborted!", file=sys.stderr)
        return 1
    except BrokenPipeError:
        detach_stdout()  # the reader went away (`| head`); click exits 1 likewise
        return 1


def _typer() -> None:
    from watchkeeper.tui.cli.app import app

    app()


def _leave(code: int | str | None) -> NoReturn:
    """The end of a quick command, whose files are closed by now. With its output flushed
    and no other thread running, it ends at once: the interpreter's own ending (a last
    collection, every module torn down) would only take time."""
    threading = sys.modules.get("threading")
    if isinstance(code, int) and (threading is None or threading.active_count() == 1):
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass  # the interpreter's ending tells of it, as ever
        else:
            os._exit(code)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
