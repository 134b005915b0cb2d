"""The console's `a` and `d` on items in Needs_Action/ (the Vault pane and an item's
preview) and the duplicate marks: the real app over a real keeper, driven by Pilot."""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import pilot_until as until
from console_kit import console, screen_text
from textual.widgets import Input

from watchkeeper.tui.screens.dismiss import DismissScreen
from watchkeeper.tui.screens.vault_file import VaultFileScreen

JOBS = '[jobs.a]\ncommand = ["true"]\n'


async def select_item(pilot, app, key: str) -> None:
    table = app.main.vault_pane.table
    await until(pilot, lambda: key in [row.value for row in table.rows])
    await pilot.press("2")
    table.move_cursor(row=table.get_row_index(key))
    await until(pilot, lambda: table.key_at_cursor() == key)


def marked(app, key: str) -> str | None:
    """The Vault pane's # cell of an item's row: "dup" marks a duplicate."""
    table = app.main.vault_pane.table
    if key not in [row.value for row in table.rows]:
        return None
    return str(table.get_cell(key, "count")).strip()


def notices(app) -> list[str]:
    return [notification.message for notification in app._notifications]


def ledger_outcomes(vault: Path) -> list[tuple[str, str]]:
    path = vault / "Logs" / "files.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(entry["path"], entry["outcome"]) for entry in map(json.loads, lines)]


async def test_a_approves_the_selected_item(make_vault) -> None:
    vault = make_vault(JOBS)
    (vault / "Needs_Action" / "fix the roof.md").write_text("# Fix the roof\n")
    async with console(vault) as (app, pilot, _client):
        await select_item(pilot, app, "Needs_Action/fix the roof.md")
        assert "Approve" in screen_text(app)  # the footer names the key
        await pilot.press("a")
        await until(pilot, lambda: (vault / "Plans" / "fix the roof.md").exists())
        await until(pilot, lambda: "Plans/fix the roof.md" in screen_text(app))
    assert not (vault / "Needs_Action" / "fix the roof.md").exists()
    assert ledger_outcomes(vault) == [("Needs_Action/fix the roof.md", "approved")]


async def test_a_on_an_item_that_is_not_waiting_changes_nothing(make_vault) -> None:
    vault = make_vault(JOBS)
    (vault / "Inbox" / "new.md").write_text("# New\n")
    async with console(vault) as (app, pilot, _client):
        await select_item(pilot, app, "Inbox/new.md")
        await pilot.press("a")
        await until(pilot, lambda: notices(app) == ["approve: select an item in Needs_Action/"])
    assert (vault / "Inbox" / "new.md").exists() and ledger_outcomes(vault) == []


async def test_d_asks_why_and_dismisses_with_the_reason(make_vault) -> None:
    vault = make_vault(JOBS)
    name = os.fsdecode(b"spam-\xe9.md")  # not UTF-8: the row shows U+FFFD for the byte
    (vault / "Needs_Action" / name).write_text("# Win a prize\n")
    async with console(vault) as (app, pilot, _client):
        await select_item(pilot, app, "Needs_Action/spam-\ufffd.md")
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, DismissScreen))
        await pilot.press("enter")  # no reason yet: the form stays and says so
        await until(pilot, lambda: "needs a reason" in screen_text(app))
        assert isinstance(app.screen, DismissScreen)
        await pilot.press(*"looks like spam")
        await pilot.press("enter")
        await until(pilot, lambda: (vault / "Done" / f"{name}.why.md").exists())
        await until(pilot, lambda: app.screen is app.main)
    note = (vault / "Done" / f"{name}.why.md").read_text()
    assert "- Reason: looks like spam\n" in note
    assert (vault / "Done" / name).read_text() == "# Win a prize\n"
    assert ledger_outcomes(vault) == [(f"Needs_Action/{name}", "dismissed")]


async def test_escape_leaves_the_item_where_it_is(make_vault) -> None:
    vault = make_vault(JOBS)
    (vault / "Needs_Action" / "keep.md").write_text("# Keep\n")
    async with console(vault) as (app, pilot, _client):
        await select_item(pilot, app, "Needs_Action/keep.md")
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, DismissScreen))
        app.screen.query_one(Input).value = "never mind"
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main)
    assert (vault / "Needs_Action" / "keep.md").exists() and ledger_outcomes(vault) == []


async def test_a_and_d_work_from_the_items_preview(make_vault) -> None:
    vault = make_vault(JOBS)
    (vault / "Needs_Action" / "one.md").write_text("# One\n\nThe first one.\n")
    (vault / "Needs_Action" / "two.md").write_text("# Two\n")
    async with console(vault) as (app, pilot, _client):
        await select_item(pilot, app, "Needs_Action/one.md")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, VaultFileScreen))
        await until(pilot, lambda: "The first one" in screen_text(app))  # it still previews
        assert "Approve" in screen_text(app) and "Dismiss" in screen_text(app)
        await pilot.press("a")
        await until(pilot, lambda: (vault / "Plans" / "one.md").exists())
        await until(pilot, lambda: app.screen is app.main)  # the preview closes: it moved

        await select_item(pilot, app, "Needs_Action/two.md")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, VaultFileScreen))
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, DismissScreen))
        await pilot.press(*"done twice", "enter")
        await until(pilot, lambda: (vault / "Done" / "two.md.why.md").exists())
        await until(pilot, lambda: app.screen is app.main)
    assert "- Reason: done twice\n" in (vault / "Done" / "two.md.why.md").read_text()


async def test_the_vault_pane_marks_duplicates(make_vault) -> None:
    vault = make_vault(
        '[jobs.intake]\ncommand = ["true"]\non_files = ["Inbox/*.md"]\n'
        'unique_by = "title"\nsettle = "0s"\n'
    )
    (vault / "Done" / "old.md").write_text("# Renew the cert\n")
    async with console(vault) as (app, pilot, _client):
        (vault / "Inbox" / "again.md").write_text("# RENEW the cert\n")
        await until(pilot, lambda: marked(app, "Inbox/again.md") == "dup")
        assert marked(app, "Done/old.md") == ""
    assert ledger_outcomes(vault) == [("Inbox/again.md", "duplicate")]
    # A console started later reads the mark from the ledger.
    async with console(vault) as (app, pilot, _client):
        await until(pilot, lambda: marked(app, "Inbox/again.md") == "dup")
