"""What a model predicts, read from its weights: its findings, heads and text modes.

The weights carry them (``labels``, ``heads``, ``text_modes`` in the metadata), so the
predictor, the store, the pages and the bench follow the loaded model rather than this
code's constants; a model with a sixth finding needs no code change. Weights written before
``heads`` existed fall back to the constants of core.labels (the shipped ones have
``labels`` and ``text_modes``). Torch-free: pages read it before any model is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.errors import CxrError
from core.labels import FINDINGS, HEADS, TEXT_MODES


class FactsError(CxrError, ValueError):
    """The weights' findings, heads or text modes do not fit the model or this code."""


@dataclass(frozen=True)
class ModelFacts:
    findings: tuple[str, ...] = FINDINGS
    heads: tuple[str, ...] = HEADS
    text_modes: tuple[str, ...] = TEXT_MODES

    def to_metadata(self) -> dict:
        return {"labels": list(self.findings), "heads": list(self.heads), "text_modes": list(self.text_modes)}


def model_facts(metadata: dict | None) -> ModelFacts:
    """Findings, heads and text modes of the weights with this metadata (constants where absent)."""
    metadata = metadata or {}
    facts = ModelFacts(findings=tuple(metadata.get("labels") or FINDINGS),
                       heads=tuple(metadata.get("heads") or HEADS),
                       text_modes=tuple(metadata.get("text_modes") or TEXT_MODES))
    # the architecture (core.model) implements these heads and modes, in this order
    if facts.heads != HEADS or facts.text_modes != TEXT_MODES:
        raise FactsError(f"these weights have heads {list(facts.heads)} and text modes {list(facts.text_modes)}; "
                         f"this code implements {list(HEADS)} and {list(TEXT_MODES)}: update the tool")
    if len(set(facts.findings)) != len(facts.findings) or not all(isinstance(f, str) and f.strip()
                                                                  for f in facts.findings):
        raise FactsError(f"the weights' findings {list(facts.findings)} must be distinct names; retrain them")
    return facts
