"""Demo job: move whole notes from Inbox/ to Needs_Action/."""

import os
import pathlib

vault = pathlib.Path(os.environ.get("WATCHKEEPER_VAULT", "."))
inbox, target = vault / "Inbox", vault / "Needs_Action"
target.mkdir(exist_ok=True)
moved = 0
for note in sorted(inbox.glob("*.md")):
    destination = target / note.name
    if destination.exists():
        print(f"skipped {note.name}: already in Needs_Action")
        continue
    note.rename(destination)
    moved += 1
    print(f"moved {note.name} -> Needs_Action/")
print(f"{moved} note(s) moved")
