"""Demo job: move whole notes from Inbox/ to Needs_Action/.

Given files (WATCHKEEPER_FILES_JSON, a JSON array of vault-relative paths) it moves
those; on a schedule it sweeps Inbox for anything left behind.
"""

import json
import os
import pathlib

vault = pathlib.Path(os.environ.get("WATCHKEEPER_VAULT", "."))
inbox, target = vault / "Inbox", vault / "Needs_Action"
target.mkdir(exist_ok=True)
given = json.loads(os.environ.get("WATCHKEEPER_FILES_JSON", "[]"))
notes = [vault / rel for rel in given] if given else sorted(inbox.glob("*.md"))
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
