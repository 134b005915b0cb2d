"""The `watchkeeper` command. Exit codes: 0 ok, 1 a job failed, 2 usage or config error,
3 another keeper holds the vault, 4 no keeper running (--status).

The quick commands (tui/cli/fast.py) run without typer; everything else builds the typer
app (tui/cli/app.py), which registers one module per command group. tests/test_hygiene.py
holds each quick command to what it may not import.

The cyclic garbage collector is off while a quick command imports and works: the
hundreds of classes and functions an import makes are never garbage, yet each
collection walks them all (a quick command is a few tens of milliseconds, and these
passes were a tenth of it). Before the interpreter exits they are frozen out of its last
collections too, which otherwise walk every object once more. A command that may go on
for long (a run in this process, a run waited for) turns the collector back on first
(common.settle).

While a quick command runs, the methods @dataclass writes come compiled from an earlier
command (tui/cli/method_cache.py); the typer app's commands compile them as ever."""

from __future__ import annotations

import gc
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watchkeeper.tui.cli.method_cache import MethodCache


def main() -> None:
    gc.disable()
    from watchkeeper.tui.cli.method_cache import installed

    methods = installed()
    try:
        _main(methods)
    finally:
        methods.close()
        if not gc.isenabled():
            gc.freeze()


def _main(methods: MethodCache) -> None:
    from watchkeeper.core.logsdir import LogsAccessError
    from watchkeeper.tui.cli.common import detach_stdout, fail
    from watchkeeper.tui.cli.fast import quick

    try:
        try:
            code = quick(sys.argv[1:])
        except KeyboardInterrupt:
            # As click ends a command Ctrl-C interrupted.
            print("\nAborted!", file=sys.stderr)
            code = 1
        except BrokenPipeError:
            detach_stdout()  # the reader went away (`| head`); click exits 1 likewise
            code = 1
        if code is None:
            # The console, the keeper and the rest run as long as they like: the collector
            # runs for them as ever.
            gc.enable()
            methods.close()  # not kept for the life of a keeper or the console
            from watchkeeper.tui.cli.app import app

            app()
    except LogsAccessError as error:
        # Another user's private Logs/, or a disk that refuses: which file, not a traceback.
        raise fail(str(error)) from None
    raise SystemExit(code)


if __name__ == "__main__":
    main()
