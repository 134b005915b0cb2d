"""The browser console's page loads nothing from outside the server: an operator's
console must not reach out to a font service (or anyone else), and works offline."""
# ruff: noqa: F811  (the `servers` fixture is imported, then named by the tests)

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from serve_kit import (
    add_token,
    servers,  # noqa: F401  (the fixture; tests name it as a parameter)
)

JOBS = '[jobs.ok]\ncommand = ["true"]\n'
# Anything that names a host: scheme://host or a scheme-relative //host.
HOST = re.compile(r"(?:\b[a-z][a-z0-9+.-]*:)?//([^/\s\"'<>)]+)", re.IGNORECASE)
CSS_URL = re.compile(r"url\(\s*[\"']?([^\"')\s]+)")
COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)  # xterm.css's licence names its authors' sites


class References(HTMLParser):
    """Every address the page gives the browser to fetch: src, href and data-*-url
    attributes, and url(...) in its styles."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and (name in ("src", "href") or name.endswith("-url")):
                self.found.append(value)

    def handle_data(self, data: str) -> None:
        self.found.extend(CSS_URL.findall(data))


def test_the_console_page_references_only_this_server(make_vault, servers) -> None:
    vault = make_vault(JOBS)
    token = add_token(vault, "viewer", "read")
    served = servers.start(vault)
    here = urlsplit(served.url).netloc
    code, _, body = served.get("/", token)
    page = body.decode()
    assert code == 200 and "textual-terminal" in page

    hosts = set(HOST.findall(page))
    assert hosts == {here}, f"the page names hosts other than {here}: {hosts - {here}}"

    parser = References()
    parser.feed(page)
    fetched = [ref for ref in parser.found if ref]  # '' (reload this page) stays here too
    assert any(ref.endswith(".js") for ref in fetched) and any("fonts/" in r for r in fetched)
    for ref in fetched:
        target = urljoin(served.url + "/", ref)
        assert urlsplit(target).netloc == here, ref
        if urlsplit(target).scheme in ("http", "https") and ref:
            code, _, content = served.get(urlsplit(target).path, token)
            assert code == 200, ref  # the script, its styles and the font are served here
            if ref.endswith(".css"):
                styles = COMMENT.sub("", content.decode())
                assert set(HOST.findall(styles)) <= {here}, ref
