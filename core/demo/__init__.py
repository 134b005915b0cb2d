"""Scripts the demo vault runs; copied into <vault>/scripts by `watchkeeper init`."""
