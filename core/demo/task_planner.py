"""Demo job: write a plan for every Needs_Action note that has none. The plan waits in
Needs_Action/ beside its note until the operator approves it (to Plans/, where the
plan-worker job takes it) or dismisses it. With work to do it takes DEMO_PACE seconds
(default 1.5), so that the console shows it RUNNING."""

import datetime
import os
import pathlib
import time

vault = pathlib.Path(os.environ.get("WATCHKEEPER_VAULT", "."))
pace = float(os.environ.get("DEMO_PACE", "1.5"))
inbox = vault / "Needs_Action"
# A plan approved (Plans/) or done with (Done/) is not written again.
held = [inbox, vault / "Plans", vault / "Done"]


def planned(note: pathlib.Path) -> bool:
    return any((folder / f"{note.stem}.plan.md").exists() for folder in held)


waiting = [
    note
    for note in sorted(inbox.glob("*.md"))
    if not note.name.endswith((".plan.md", ".why.md")) and not planned(note)
]
if waiting:
    print(f"planning {len(waiting)} note(s)", flush=True)
    time.sleep(pace)
written = 0
for note in waiting:
    plan = inbox / f"{note.stem}.plan.md"
    if planned(note) or not note.exists():
        continue
    lines = note.read_text(encoding="utf-8", errors="replace").splitlines()
    title = next((line.lstrip("# ").strip() for line in lines if line.strip()), note.stem)
    steps = [line.strip()[2:].strip() for line in lines if line.strip().startswith(("- ", "* "))]
    steps = steps or ["Read the note", "Decide what to do", "Do it"]
    today = datetime.date.today().isoformat()
    body = [f"# Plan: {title}", "", f"Source: Needs_Action/{note.name}  ", f"Planned: {today}", ""]
    body += [f"- [ ] {step}" for step in steps]
    # Written aside and renamed in: a half-written plan is never approved.
    scratch = inbox / f".{plan.name}.part"
    scratch.write_text("\n".join(body) + "\n", encoding="utf-8")
    scratch.rename(plan)
    written += 1
    print(f"planned {note.name} -> Needs_Action/{plan.name} (waits for approval)")
print(f"{written} plan(s) written")
