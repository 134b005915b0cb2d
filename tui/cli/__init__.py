"""The `watchkeeper` command line: main.py is the entry point; fast.py parses the quick
commands without typer, app.py builds the typer app for the rest; every other module is
one command group's work."""
