"""The console's widgets, one a file: the panes, their tables and the log view."""
