"""Demo job: work through each plan the operator approved. Approving a plan in
Needs_Action/ (`a` in the console's Vault pane, or `watchkeeper approve PATH`) moves it to
Plans/, which hands it to this job; it ticks every box (the work, done) and the archiver
files it into Done. On a schedule it sweeps Plans/ for approved plans left unworked.
Only plans the task-planner wrote are touched. With work to do it takes DEMO_PACE
seconds (default 1.5), so that the console shows it RUNNING."""

import json
import os
import pathlib
import time

vault = pathlib.Path(os.environ.get("WATCHKEEPER_VAULT", "."))
pace = float(os.environ.get("DEMO_PACE", "1.5"))
given = json.loads(os.environ.get("WATCHKEEPER_FILES_JSON", "[]"))
plans = [vault / rel for rel in given] if given else sorted((vault / "Plans").glob("*.plan.md"))


def unworked(plan: pathlib.Path) -> str | None:
    try:
        text = plan.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return text if "\nSource: Needs_Action/" in text and "- [ ]" in text else None


todo = [plan for plan in plans if unworked(plan) is not None]
if todo:
    print(f"working through {len(todo)} approved plan(s)", flush=True)
    time.sleep(pace)
worked = 0
for plan in todo:
    text = unworked(plan)
    if text is None:
        continue
    plan.write_text(text.replace("- [ ]", "- [x]"), encoding="utf-8")
    worked += 1
    print(f"worked through {plan.name}: every box ticked, the archiver files it into Done")
print(f"{worked} plan(s) worked through")
