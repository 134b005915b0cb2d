"""Work items: `approve` and `dismiss` of items in Needs_Action/ through the real CLI, with
and without a keeper (a real --daemon, and its control socket), odd file names, paths
that are refused, [vault] approve_to, and unique_by = "title" holding duplicates."""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path

import pytest
from conftest import final_records, keeper_log, run_cli, wait_for

from watchkeeper.core.config import ConfigError, load_config
from watchkeeper.core.control_client import request, subscribe
from watchkeeper.core.control_protocol import ControlFailed

ODD_NAMES = [
    "with space.md",
    "-leading-dash.md",
    "new\nline.md",
    "ünïcødé ✓.md",
    os.fsdecode(b"latin1-\xe9.md"),  # not UTF-8: a str with a lone surrogate
]


def ledger(vault: Path) -> list[dict]:
    path = vault / "Logs" / "files.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def item(vault: Path, name: str, text: str = "# An item\n") -> Path:
    path = vault / "Needs_Action" / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ODD_NAMES)
def test_approve_and_dismiss_any_name_without_a_keeper(make_vault, name: str) -> None:
    vault = make_vault('[jobs.a]\ncommand = ["true"]\n')
    item(vault, name)
    # `--` ends the options: a name starting with '-' is the PATH.
    done = run_cli("approve", "--vault", str(vault), "--", f"Needs_Action/{name}", cwd=vault)
    assert done.returncode == 0, done.stderr
    assert "approved" in done.stdout and "through keeper" not in done.stdout
    assert (vault / "Plans" / name).read_text() == "# An item\n"
    assert not os.path.lexists(vault / "Needs_Action" / name)

    item(vault, name, "# Second\n")
    absolute = str(vault / "Needs_Action" / name)
    done = run_cli("dismiss", absolute, "--reason", "not ours\nto do", cwd=vault.parent)
    assert done.returncode == 0, done.stderr
    assert (vault / "Done" / name).read_text() == "# Second\n"
    note = (vault / "Done" / f"{name}.why.md").read_text()
    assert "- Reason: not ours\n  to do" in note
    assert f"- By: {getpass.getuser()}\n" in note
    assert "- At: 20" in note
    lines = ledger(vault)
    assert [(line["path"], line["outcome"], line["note"]) for line in lines] == [
        (f"Needs_Action/{name}", "approved", f"Plans/{name}"),
        (f"Needs_Action/{name}", "dismissed", f"Done/{name}"),
    ]
    assert all(line["job"] == "" for line in lines)


def test_a_second_item_of_the_same_name_does_not_overwrite(make_vault) -> None:
    vault = make_vault('[jobs.a]\ncommand = ["true"]\n')
    (vault / "Plans" / "x.md").write_text("older\n")
    item(vault, "x.md", "newer\n")
    assert run_cli("approve", str(vault / "Needs_Action" / "x.md")).returncode == 0
    assert (vault / "Plans" / "x.md").read_text() == "older\n"
    assert (vault / "Plans" / "x (2).md").read_text() == "newer\n"


def test_paths_that_are_not_waiting_items_are_refused(make_vault, tmp_path: Path) -> None:
    vault = make_vault('[jobs.a]\ncommand = ["true"]\n')
    outside = tmp_path / "outside.md"
    outside.write_text("# not in the vault\n")
    (vault / "Inbox" / "new.md").write_text("# new\n")
    (vault / "Needs_Action" / "escape.md").symlink_to(outside)
    item(vault, "real.md")
    cases = [
        (["approve", str(outside)], "is outside the vault"),
        (["approve", "--", "../outside.md"], "is outside the vault"),
        (["approve", "Inbox/new.md"], "is not in Needs_Action/"),
        (["approve", "Needs_Action"], "is not in Needs_Action/"),
        (["approve", "Needs_Action/missing.md"], "no item Needs_Action/missing.md"),
        (["approve", "Needs_Action/escape.md"], "points outside the vault"),
        (["dismiss", "Needs_Action/real.md", "--reason", "  "], "needs a reason"),
    ]
    for args, words in cases:
        refused = run_cli(args[0], "--vault", str(vault), *args[1:], cwd=vault)
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert words in refused.stderr, (args, refused.stderr)
        assert "Traceback" not in refused.stderr
    missing_reason = run_cli("dismiss", "Needs_Action/real.md", "--vault", str(vault), cwd=vault)
    assert missing_reason.returncode == 2 and "--reason" in missing_reason.stderr
    assert (vault / "Needs_Action" / "real.md").exists() and (vault / "Inbox" / "new.md").exists()
    assert outside.exists() and ledger(vault) == []


def test_the_vault_is_found_from_the_items_own_path(make_vault, tmp_path: Path) -> None:
    vault = make_vault('[jobs.a]\ncommand = ["true"]\n')
    item(vault, "a.md")
    done = run_cli("approve", str(vault / "Needs_Action" / "a.md"), cwd=tmp_path.parent)
    assert done.returncode == 0, done.stderr
    assert (vault / "Plans" / "a.md").exists()


def test_approve_to_names_another_folder(make_vault) -> None:
    vault = make_vault('[vault]\napprove_to = "Work/Approved"\n[jobs.a]\ncommand = ["true"]\n')
    item(vault, "a.md")
    assert run_cli("approve", "--vault", str(vault), "Needs_Action/a.md", cwd=vault).returncode == 0
    assert (vault / "Work" / "Approved" / "a.md").exists()


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ('approve_to = "../elsewhere"', "leads outside the vault"),
        ('approve_to = "/tmp"', "leads outside the vault"),
        ('approve_to = "Needs_Action"', "cannot take approved items"),
        ('approve_to = ""', "expected a folder"),
        ('aprove_to = "Plans"', "unknown key 'aprove_to'"),
    ],
)
def test_vault_table_is_checked(tmp_path: Path, table: str, words: str) -> None:
    config = tmp_path / "watchkeeper.toml"
    config.write_text(f'[vault]\n{table}\n[jobs.a]\ncommand = ["true"]\n')
    with pytest.raises(ConfigError) as error:
        load_config(config)
    [issue] = error.value.issues
    assert words in issue.message and issue.key.startswith("vault.") and issue.line == 2


def test_unique_by_needs_on_files(tmp_path: Path) -> None:
    config = tmp_path / "watchkeeper.toml"
    config.write_text('[jobs.a]\ncommand = ["true"]\nunique_by = "title"\n')
    with pytest.raises(ConfigError) as error:
        load_config(config)
    assert "unique_by goes with on_files" in str(error.value.issues[0])
    config.write_text('[jobs.a]\ncommand = ["true"]\non_files = ["Inbox/*"]\nunique_by = "name"\n')
    with pytest.raises(ConfigError) as error:
        load_config(config)
    assert "expected one of 'title'" in str(error.value.issues[0])


def test_approval_through_the_daemon_triggers_the_plans_job(make_vault, daemon) -> None:
    vault = make_vault(
        """
        [jobs.worker]
        command = ["sh", "-c", "printf '%s' \\"$WATCHKEEPER_FILES\\" > Logs/handed.txt"]
        on_files = ["Plans/*.md"]
        settle = "0s"
        """
    )
    name = "-odd name ✓.md"
    item(vault, name)
    daemon(vault)
    stream, _ = subscribe(vault, kinds=["item_decided"])
    with stream:
        done = run_cli("approve", "--vault", str(vault), "--", f"Needs_Action/{name}", cwd=vault)
        assert done.returncode == 0, done.stderr
        assert "through keeper pid" in done.stdout
        event = stream.read()
    assert event["event"] == "item_decided"
    assert event["data"]["path"] == f"Needs_Action/{name}"
    assert event["data"]["outcome"] == "approved" and event["data"]["to"] == f"Plans/{name}"

    def handed() -> dict | None:
        return next(
            (r for r in final_records(vault).values() if r["files"] == [f"Plans/{name}"]), None
        )

    record = wait_for(handed)
    assert record["taskId"] == "worker" and record["trigger"] == "file"  # type: ignore[index]
    assert record["status"] == "success"  # type: ignore[index]
    assert (vault / "Logs" / "handed.txt").read_text() == f"Plans/{name}"
    assert f"approved Needs_Action/{name} -> Plans/{name} by " in keeper_log(vault)
    assert [line["outcome"] for line in ledger(vault)] == ["approved", "success"]


def test_the_control_socket_dismisses_and_refuses(make_vault, daemon) -> None:
    vault = make_vault('[jobs.a]\ncommand = ["true"]\n')
    name = os.fsdecode(b"bad-\xe9 name.md")
    item(vault, name)
    (vault / "Inbox" / "x.md").write_text("x\n")
    daemon(vault)
    with pytest.raises(ControlFailed, match="is not an item in Needs_Action/"):
        request(vault, "approve", path="Inbox/x.md")
    with pytest.raises(ControlFailed, match="needs a reason"):
        request(vault, "dismiss", path=f"Needs_Action/{name}")
    with pytest.raises(ControlFailed, match="needs path"):
        request(vault, "approve")
    answer = request(vault, "dismiss", path=f"Needs_Action/{name}", reason="spam", by="tester")
    decision = answer["decision"]
    assert decision["to"] == f"Done/{name}" and decision["by"] == "tester"
    assert decision["note"] == f"Done/{name}.why.md"
    note = (vault / "Done" / f"{name}.why.md").read_text()
    assert "- Reason: spam" in note and "- By: tester" in note
    assert "bad-\ufffd name.md" in note  # the byte that is not UTF-8, shown as U+FFFD
    assert (vault / "Inbox" / "x.md").exists()


INTAKE = """
[jobs.intake]
command = ["sh", "-c", "for f in $WATCHKEEPER_FILES; do mv \\"$f\\" Needs_Action/; done"]
on_files = ["Inbox/*.md"]
unique_by = "title"
settle = "0s"
"""


def test_unique_by_title_holds_duplicates_where_they_are(make_vault) -> None:
    vault = make_vault(INTAKE)
    (vault / "Done" / "old.md").write_text("Some preamble\n\n# Renew the  Cert\n")
    (vault / "Plans" / "Book the lunch.md").write_text("no heading here\n")
    (vault / "Inbox" / "same.md").write_text("#   renew the cert  \n\nagain\n")
    (vault / "Inbox" / "lunch.md").write_text("# BOOK the\tlunch\n")
    (vault / "Inbox" / "fresh.md").write_text("# Something new\n")
    once = run_cli("--once", "--vault", str(vault))
    assert once.returncode == 0, once.stdout + once.stderr
    records = [r for r in final_records(vault).values() if r["taskId"] == "intake"]
    assert [r["files"] for r in records] == [["Inbox/fresh.md"]]
    assert (vault / "Needs_Action" / "fresh.md").exists()
    assert (vault / "Inbox" / "same.md").exists() and (vault / "Inbox" / "lunch.md").exists()
    held = {line["path"]: line["note"] for line in ledger(vault) if line["outcome"] == "duplicate"}
    assert held == {"Inbox/same.md": "Done/old.md", "Inbox/lunch.md": "Plans/Book the lunch.md"}
    log = keeper_log(vault)
    assert "Inbox/same.md not handed to intake: its title" in log
    # A second pass hands nothing and records nothing new: the ledger knows them.
    again = run_cli("--once", "--vault", str(vault))
    assert again.returncode == 0
    assert len([line for line in ledger(vault) if line["outcome"] == "duplicate"]) == 2
    # Changed so it no longer repeats a title, it is a new arrival and is handed.
    (vault / "Inbox" / "same.md").write_text("# Renew the cert, the other one\n")
    assert run_cli("--once", "--vault", str(vault)).returncode == 0
    assert (vault / "Needs_Action" / "same.md").exists()


def test_without_unique_by_the_same_title_is_handed(make_vault) -> None:
    vault = make_vault(INTAKE.replace('unique_by = "title"\n', ""))
    (vault / "Done" / "old.md").write_text("# Renew the cert\n")
    (vault / "Inbox" / "same.md").write_text("# Renew the cert\n")
    assert run_cli("--once", "--vault", str(vault)).returncode == 0
    assert (vault / "Needs_Action" / "same.md").exists()
