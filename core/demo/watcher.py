"""Demo job: move whole notes from Inbox/ to Needs_Action/.

Given files (WATCHKEEPER_FILES_JSON, a JSON array of vault-relative paths) it moves
those; on a schedule it sweeps Inbox for anything left behind. With work to do it takes
DEMO_PACE seconds (default 1.5), so that the console shows it RUNNING.
"""

import json
import os
import pathlib
import time

vault = pathlib.Path(os.environ.get("WATCHKEEPER_VAULT", "."))
pace = float(os.environ.get("DEMO_PACE", "1.5"))
inbox, target = vault / "Inbox", vault / "Needs_Action"
target.mkdir(exist_ok=True)
given = json.loads(os.environ.get("WATCHKEEPER_FILES_JSON", "[]"))
notes = [vault / rel for rel in given] if given else sorted(inbox.glob("*.md"))
notes = [note for note in notes if note.exists()]
if notes:
    print(f"reading {len(notes)} note(s) in Inbox", flush=True)
    time.sleep(pace)
moved = 0
for note in notes:
    if not note.exists():
        continue
    destination = target / note.name
    if destination.exists():
        print(f"skipped {note.name}: already in Needs_Action")
        continue
    note.rename(destination)
    moved += 1
    print(f"moved {note.name} -> Needs_Action/")
print(f"{moved} note(s) moved")
