"""Demo job: write a plan into Plans/ for every Needs_Action note that has none. With
work to do it takes DEMO_PACE seconds (default 1.5), so that the console shows it RUNNING."""

import datetime
import os
import pathlib
import time

vault = pathlib.Path(os.environ.get("WATCHKEEPER_VAULT", "."))
pace = float(os.environ.get("DEMO_PACE", "1.5"))
plans = vault / "Plans"
plans.mkdir(exist_ok=True)
waiting = [
    note
    for note in sorted((vault / "Needs_Action").glob("*.md"))
    if not (plans / f"{note.stem}.plan.md").exists()
]
if waiting:
    print(f"planning {len(waiting)} note(s)", flush=True)
    time.sleep(pace)
written = 0
for note in waiting:
    plan = plans / f"{note.stem}.plan.md"
    if plan.exists() or not note.exists():
        continue
    lines = note.read_text(encoding="utf-8", errors="replace").splitlines()
    title = next((line.lstrip("# ").strip() for line in lines if line.strip()), note.stem)
    steps = [line.strip()[2:].strip() for line in lines if line.strip().startswith(("- ", "* "))]
    steps = steps or ["Read the note", "Decide what to do", "Do it"]
    today = datetime.date.today().isoformat()
    body = [f"# Plan: {title}", "", f"Source: Needs_Action/{note.name}  ", f"Planned: {today}", ""]
    body += [f"- [ ] {step}" for step in steps]
    plan.write_text("\n".join(body) + "\n", encoding="utf-8")
    written += 1
    print(f"planned {note.name} -> Plans/{plan.name}")
print(f"{written} plan(s) written")
