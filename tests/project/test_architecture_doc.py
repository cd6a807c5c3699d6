"""docs/architecture.md matches the tree: every module of core/ is in its map, and the map
names no module that is gone."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_core_module_is_in_the_architecture_map_and_nothing_else():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    start = doc.index("```\ncore/\n") + 3  # the core/ tree block
    tree = doc[start:doc.index("```", start)]
    listed = set(re.findall(r"[├└]── ([a-z_0-9]+\.py)", tree))  # the entries, not names in their notes
    modules = {p.name for p in (ROOT / "core").rglob("*.py") if p.name != "__init__.py"}
    assert modules - listed == set(), f"modules missing from docs/architecture.md: {sorted(modules - listed)}"
    assert listed - modules <= {"__init__.py"}, f"gone, still in the map: {sorted(listed - modules - {'__init__.py'})}"
