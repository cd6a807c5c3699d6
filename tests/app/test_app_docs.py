"""README and docs/app.md describe the app that app.py builds: as many pages as it has (they said
"four" after the PACS page came), each by its title, and the batch CSV's real columns (they said
`file,text[,mode]`; the page takes `image,text,text_mode,id`, as scripts/predict.py --batch does).
Issue 26, item 12."""
from __future__ import annotations

import re
from pathlib import Path

from core.serving.batch_uploads import TextRow, read_text_map

ROOT = Path(__file__).resolve().parents[2]
NUMBERS = {3: "three", 4: "four", 5: "five", 6: "six", 7: "seven"}


def _titles() -> list[str]:
    return re.findall(r'st\.Page\("pages/[a-z_]+\.py", title="([^"]+)"', (ROOT / "app.py").read_text())


def test_readme_and_the_app_doc_count_and_name_every_page():
    titles = _titles()
    assert len(titles) >= 5 and "PACS" in titles
    readme, app_doc = (ROOT / "README.md").read_text(), (ROOT / "docs" / "app.md").read_text()
    words = f"opens {NUMBERS[len(titles)]} pages"
    assert words in readme and words in app_doc
    for title in titles:
        assert f"- **{title}** —" in readme, title
        assert f"\n## {title}\n" in app_doc, title


def test_the_documented_batch_csv_is_the_one_the_page_reads():
    header = "image,text,text_mode,id"
    for doc in (ROOT / "README.md", ROOT / "docs" / "app.md"):
        text = doc.read_text()
        assert f"`{header}`" in text, doc.name
        assert "file,text[,mode]" not in text, doc.name
    assert read_text_map(f"{header}\nscans/a.png,Cough.,indication,ward-7\n".encode()) == {
        "a.png": TextRow("Cough.", "indication", "ward-7")}
