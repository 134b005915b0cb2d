"""The console and command line of watchkeeper (imports core, never the reverse)."""
