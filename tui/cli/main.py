"""The `watchkeeper` command. Exit codes: 0 ok, 1 a job failed, 2 usage or config error,
3 another keeper holds the vault, 4 no keeper running (--status).

The quick commands (tui/cli/fast.py) run without typer; everything else builds the typer
app (tui/cli/app.py), which registers one module per command group. tests/test_hygiene.py
holds each quick command to what it may not import."""

from __future__ import annotations

import sys


def main() -> None:
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
            from watchkeeper.tui.cli.app import app

            app()
    except LogsAccessError as error:
        # Another user's private Logs/, or a disk that refuses: which file, not a traceback.
        raise fail(str(error)) from None
    raise SystemExit(code)


if __name__ == "__main__":
    main()
