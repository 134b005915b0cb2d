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
(common.settle)."""

from __future__ import annotations

import gc
import sys


def main() -> None:
    gc.disable()
    try:
        _main()
    finally:
        if not gc.isenabled():
            gc.freeze()


def _main() -> None:
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
            from watchkeeper.tui.cli.app import app

            app()
    except LogsAccessError as error:
        # Another user's private Logs/, or a disk that refuses: which file, not a traceback.
        raise fail(str(error)) from None
    raise SystemExit(code)


if __name__ == "__main__":
    main()
