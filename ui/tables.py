"""The tables the pages show (st.dataframe) of a prediction and of the log: column names and
flags are wording for the screen. The log row itself is core.records'."""
from __future__ import annotations

import pandas as pd

from core.labels import FINDINGS


def heads_table(fusion: dict, image: dict, text: dict | None, thresholds: dict,
                head_thresholds: dict | None = None, discordant: list | None = None) -> pd.DataFrame:
    """One row per finding: each head's probability, the threshold, what is flagged."""
    rows = []
    for f in FINDINGS:
        row = {"finding": f, "fused": fusion[f], "threshold": thresholds[f],
               "fused ≥ threshold": "yes" if fusion[f] >= thresholds[f] else "no",
               "image head": image.get(f)}
        if text:
            row["text head"] = text.get(f)
        if head_thresholds:
            row["image thr."] = head_thresholds["image"][f]
            if text:
                row["text thr."] = head_thresholds["text"][f]
        if text is not None:
            row["discordant"] = "yes" if f in (discordant or []) else ""
        rows.append(row)
    return pd.DataFrame(rows).set_index("finding")


def history_frame(rows: list[dict]) -> pd.DataFrame:
    """The review table: one row per logged prediction; what needs attention (out of
    distribution, discordance) comes before the probabilities, so it is never off-screen."""
    out = []
    for r in rows:
        flags = (["⚠ out of distribution"] if r["out_of_distribution"] else []) + \
            (["discordant: " + ", ".join(r["discordant"])] if r["discordant"] else [])
        row = {"id": r["id"], "created (UTC)": r["created_at"][:19].replace("T", " "), "flags": " · ".join(flags),
               "file": r["image_name"], "mode": r["text_mode"],
               "discordance score": r.get("discordance_score") or 0.0}
        row.update({f: r["fusion"].get(f) for f in FINDINGS})
        row.update({"reviewed": r.get("reviewed", False), "source": r["source"], "note": r.get("note", "")})
        out.append(row)
    columns = ["id", "created (UTC)", "flags", "file", "mode", "discordance score", *FINDINGS, "reviewed", "source",
               "note"]
    return pd.DataFrame(out, columns=columns)
