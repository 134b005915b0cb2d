"""Demo job: write a plan into Plans/ for every Needs_Action note that has none."""

import datetime
import os
import pathlib

vault = pathlib.Path(os.environ.get("WATCHKEEPER_VAULT", "."))
plans = vault / "Plans"
plans.mkdir(exist_ok=True)
written = 0
for note in sorted((vault / "Needs_Action").glob("*.md")):
    plan = plans / f"{note.stem}.plan.md"
    if plan.exists():
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
