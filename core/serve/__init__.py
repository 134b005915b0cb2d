"""`watchkeeper serve`'s HTTP side without the console: tokens, the event fan-out (SSE),
probes, metrics and the aiohttp application they make. The browser console (`/`, the
WebSocket) is the tui's to add (tui/serve_console.py): core never imports textual."""
