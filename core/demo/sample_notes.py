"""Demo job: keep work flowing through the demo vault, so there is something to watch.

Each run drops a sample note into Inbox (while fewer than OPEN sample notes wait in
Inbox and Needs_Action), approves the plan of the oldest sample that waited in
Needs_Action more than FINISH seconds through `watchkeeper approve`, as an operator would
(a ledger line and an event; it moves to Plans/, the plan-worker job works through it,
the archiver files it into Done), and keeps the
newest KEEP_DONE finished samples in Done. It only ever touches files named sample-*:
your own notes are left alone. Remove [jobs.sample-notes] from watchkeeper.toml to stop it.
"""

import datetime
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import time

OPEN = 3
FINISH = 90
KEEP_DONE = 10  # files: a note and its plan each
SAMPLES = [
    ("Renew the TLS certificate", ["Check the expiry date", "Renew it", "Reload the proxy"]),
    ("Answer the supplier's email", ["Read the quote", "Compare with last year", "Reply"]),
    ("Prepare the weekly report", ["Collect the numbers", "Write three lines", "Send it"]),
    ("Back up the laptop", ["Plug in the disk", "Run the backup", "Test a restore"]),
    ("Book the team lunch", ["Ask who comes", "Pick a place", "Reserve a table"]),
]

vault = pathlib.Path(os.environ.get("WATCHKEEPER_VAULT", "."))
inbox, waiting, plans, done = (vault / name for name in ("Inbox", "Needs_Action", "Plans", "Done"))



def watchkeeper() -> list[str] | None:
    """The CLI: on PATH, else this Python's (a venv not activated), else none."""
    found = shutil.which("watchkeeper")
    if found is not None:
        return [found]
    if importlib.util.find_spec("watchkeeper") is not None:
        return [sys.executable, "-P", "-m", "watchkeeper.tui.cli.main"]
    return None


for plan in sorted(waiting.glob("sample-*.plan.md"), key=lambda path: path.stat().st_mtime):
    if time.time() - plan.stat().st_mtime < FINISH or (plans / plan.name).exists():
        continue
    cli = watchkeeper()
    if cli is None:
        print(f"{plan.name} waits for you: no watchkeeper command here to approve it with")
        break
    rel = f"Needs_Action/{plan.name}"
    answer = subprocess.run(
        [*cli, "approve", "--vault", str(vault), "--", rel], capture_output=True, text=True
    )
    said = (answer.stdout or answer.stderr).strip()
    print(said if answer.returncode == 0 else f"could not approve {plan.name}: {said}")
    break

finished = sorted(done.glob("sample-*"), key=lambda path: path.stat().st_mtime, reverse=True)
for old in finished[KEEP_DONE:]:
    old.unlink()

open_notes = [
    note
    for note in [*inbox.glob("sample-*.md"), *waiting.glob("sample-*.md")]
    if not note.name.endswith(".plan.md")
]
if len(open_notes) >= OPEN:
    print(f"{len(open_notes)} sample notes still open: none dropped")
else:
    now = datetime.datetime.now()
    dropped = [*open_notes, *done.glob("sample-*.md")]
    title, steps = SAMPLES[len(dropped) % len(SAMPLES)]
    slug = title.lower().replace("'", "").replace(" ", "-")
    name, tries = f"sample-{now:%H%M%S}-{slug}.md", 1
    while any((folder / name).exists() for folder in (inbox, waiting, done)):
        tries += 1
        name = f"sample-{now:%H%M%S}-{tries}-{slug}.md"
    body = [f"# {title}", "", *(f"- {step}" for step in steps), ""]
    body.append("(A sample note from the sample-notes demo job.)")
    # Written aside and renamed in: the keeper hands over a file that arrived whole.
    scratch = inbox / f".{name}.part"
    scratch.write_text("\n".join(body) + "\n", encoding="utf-8")
    scratch.rename(inbox / name)
    print(f"dropped {name} into Inbox")
