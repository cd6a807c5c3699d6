"""The description's per-finding blocks, typed (read and written by core.model.description, key for key):

- ``Evidence``: the held-out evidence (core.evaluation.evidence builds it): per text mode, head and finding
  an AUC with CI, positives, source and the cross-validation estimate; which findings the image supports;
- ``OperatingPoints``: per text mode, finding and target ("specificity 0.90") the threshold and what a flag
  there means (core.evaluation.operating_targets chooses them); each mode's default and head;
- ``DiscordancePoints``: report QA's cuts on the image probability (core.evaluation.operating_points).

One point or one evidence entry stays the JSON object every output prints (the SR, the log and the CLI copy
it as it is); the blocks give them names and one way to look them up.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields


def _from_dict(cls, d: dict):
    """A block from its dict: the known fields by name, everything else kept in ``extra``."""
    names = {f.name for f in fields(cls)} - {"extra"}
    d = dict(d)
    known = {k: d.pop(k) for k in list(d) if k in names}
    return cls(**known, extra=d)


def _to_dict(block) -> dict:
    """The dict a block was read from, key for key (fields that are None are left out)."""
    out = dict(block.extra)
    for f in fields(block):
        if f.name != "extra" and getattr(block, f.name) is not None:
            out[f.name] = getattr(block, f.name)
    return out


@dataclass(frozen=True)
class Evidence:
    rule: str | None = None
    split: str | None = None
    # text mode -> head -> finding -> {auc, ci, positives, source, reliable, cv: {pooled_auc, pooled_ci, positives...}}
    table: dict[str, dict[str, dict[str, dict]]] = field(default_factory=dict)
    image_reliable: dict[str, bool] = field(default_factory=dict)
    cv: dict | None = None   # the recipe's cross-validation summary: folds, folds_done, macro, recipe
    extra: dict = field(default_factory=dict)

    from_dict = classmethod(_from_dict)
    to_dict = _to_dict

    def entry(self, mode: str, head: str, finding: str) -> dict | None:
        return self.table.get(mode, {}).get(head, {}).get(finding)

    def cv_macro(self) -> dict:
        """'mode/head' -> {macro_auc, macro_auc_ci, n_studies} of the recipe's cross-validation ({}: none)."""
        return (self.cv or {}).get("macro") or {}


@dataclass(frozen=True)
class OperatingPoints:
    rule: str | None = None
    default: dict[str, str] = field(default_factory=dict)     # text mode -> the default target's name
    choices: list[str] | None = None
    head: dict[str, str] = field(default_factory=dict)        # text mode -> the head that decides
    # text mode -> finding -> target name -> {threshold, sensitivity, specificity, CIs, ppv, source, test...}
    points: dict[str, dict[str, dict[str, dict]]] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)                 # when, negations, normal_flag_rate, report_qa, site

    from_dict = classmethod(_from_dict)
    to_dict = _to_dict

    def point(self, mode: str, finding: str, name: str) -> dict | None:
        return self.points.get(mode, {}).get(finding, {}).get(name)

    def for_mode(self, mode: str) -> dict[str, dict[str, dict]]:
        """finding -> target name -> point, for one text mode."""
        return self.points.get(mode, {})


@dataclass(frozen=True)
class DiscordancePoints:
    budget: float | None = None
    points: dict[str, dict[str, float | None]] = field(default_factory=dict)   # finding -> {low, high}
    rule: str | None = None
    supported: list[str] | None = None
    val_flag_rate: float | None = None
    extra: dict = field(default_factory=dict)

    from_dict = classmethod(_from_dict)
    to_dict = _to_dict


BLOCKS = {"evidence": Evidence, "operating_points": OperatingPoints, "discordance": DiscordancePoints}
