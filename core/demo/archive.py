"""Demo job: file finished work (every box in its plan ticked) into Done/."""

import os
import pathlib

vault = pathlib.Path(os.environ.get("WATCHKEEPER_VAULT", "."))
done = vault / "Done"
done.mkdir(exist_ok=True)
archived = 0
for plan in sorted((vault / "Plans").glob("*.plan.md")):
    text = plan.read_text(encoding="utf-8", errors="replace")
    if "- [ ]" in text or "- [x]" not in text.lower():
        continue
    note = vault / "Needs_Action" / plan.name.replace(".plan.md", ".md")
    for path in (note, plan):
        if path.exists():
            path.rename(done / path.name)
    archived += 1
    print(f"archived {plan.name}")
print(f"{archived} finished item(s) archived")
