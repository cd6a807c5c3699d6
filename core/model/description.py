"""The description of a model: what its weights say of themselves, typed, read without torch.

``ModelDescription`` is the one place the weights' metadata is written and read: findings,
heads and text modes, thresholds, held-out evidence, report-QA operating points,
preprocessing, the data split, provenance (version, commit, backbones, data, training
config, refits) and the metrics recorded at training time. Every tool that works on existing
weights takes its findings from here, never from ``core.data.labels``' constants, so a
model with a sixth finding needs no code change. (The out-of-distribution guard's
parameters are tensors in the weights file, ``core.model.guard``; ``guard_fitted`` says
whether training fitted one.)

The sidebar and every page need these facts before any model is loaded; importing torch for
that would put seconds on the first page view. A safetensors file starts with an 8-byte
little-endian header length and a JSON header whose ``__metadata__`` holds the metadata
under ``"cxr"`` (core.model.checkpoint writes it, with a digest over exactly this JSON, so
``to_metadata`` gives back the dict ``from_metadata`` read, key for key).
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from core.data.labels import FINDINGS, HEADS, TEXT_MODES
from core.errors import CxrError
from core.model.description_blocks import BLOCKS, DiscordancePoints, Evidence, OperatingPoints
from core.model.recalibration_maps import Recalibration

WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "metadata.json"
INT8_FILE = "image_int8.safetensors"  # the int8 image encoder's calibration (core.model.int8_image)
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the header size


class WeightsError(CxrError, RuntimeError):
    """The weights folder is missing, truncated or does not match this code."""


def read_metadata(weights_dir: Path) -> dict:
    path = Path(weights_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise WeightsError(f"no trained weights at {path}; train them with: "
                           f"python scripts/train.py --data DIR --out {weights_dir}")
    try:
        return _header_metadata(path, "cxr")
    except Exception as exc:
        raise WeightsError(f"{path} is damaged or not a weights file of this tool ({type(exc).__name__}); "
                           "retrain or restore it") from None


def _header_metadata(path: Path, key: str) -> dict:
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        if size > _MAX_HEADER:
            raise ValueError("header too large")
        header = json.loads(fh.read(size))
    return json.loads(header["__metadata__"][key])


def read_int8_info(weights_dir: Path) -> dict | None:
    """What the int8 calibration file says of itself (made for which encoder, on what, and the
    validation-split changes it measured), or None when there is no readable one."""
    path = Path(weights_dir) / INT8_FILE
    try:
        return _header_metadata(path, "int8") if path.is_file() else None
    except Exception:  # noqa: BLE001 — a damaged file is simply not used (core.model.int8_image)
        return None


# What a model predicts, read from its weights: its findings, heads and text modes.
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
    # the architecture (core.model.fusion) implements these heads and modes, in this order
    if facts.heads != HEADS or facts.text_modes != TEXT_MODES:
        raise FactsError(f"these weights have heads {list(facts.heads)} and text modes {list(facts.text_modes)}; "
                         f"this code implements {[str(h) for h in HEADS]} and {[str(m) for m in TEXT_MODES]}: "
                         "update the tool")
    if len(set(facts.findings)) != len(facts.findings) or not all(isinstance(f, str) and f.strip()
                                                                  for f in facts.findings):
        raise FactsError(f"the weights' findings {list(facts.findings)} must be distinct names; retrain them")
    return facts


@dataclass(frozen=True)
class Preprocessing:
    """How pixels become the model's input (core.data.preprocess applies it)."""
    image_size: int
    mean: float
    std: float
    color: str = "grayscale"
    resize: str = "square bilinear"

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        return cls(image_size=int(d["image_size"]), mean=float(d["mean"]), std=float(d["std"]),
                   color=d.get("color", "grayscale"), resize=d.get("resize", "square bilinear"))

    def to_dict(self) -> dict:
        return {"color": self.color, "image_size": self.image_size, "mean": self.mean, "resize": self.resize,
                "std": self.std}


@dataclass(frozen=True)
class ModelDescription:
    """Everything a weights file says of itself. ``None`` means the file does not say it
    (older weights); ``extra`` keeps keys this code does not know, so nothing is lost."""
    findings: tuple[str, ...] = FINDINGS
    heads: tuple[str, ...] = HEADS
    text_modes: tuple[str, ...] = TEXT_MODES
    version: str | None = None
    # text mode -> head -> finding -> threshold on the calibrated probability
    thresholds: dict[str, dict[str, dict[str, float]]] | None = None
    threshold_rule: str | None = None
    # rule, split, table (mode -> head -> finding -> {auc, ci, positives, source, reliable, cv}),
    # image_reliable (finding -> bool), cv (the recipe's cross-validation summary) — core.evaluation.evidence
    evidence: Evidence | None = None
    discordance: DiscordancePoints | None = None  # report-QA operating points (core.evaluation.operating_points)
    preprocessing: Preprocessing | None = None
    text_max_len: int | None = None
    split: dict[str, list[str]] | None = None  # train / val / test -> report uids
    model_config: dict | None = None  # the arguments that rebuild the network (core.model.fusion.ModelConfig)
    text_embedding_fingerprint: str | None = None
    # provenance
    created_at: str | None = None
    git_commit: str | None = None
    format: str | None = None
    backbones: dict | None = None
    data: dict | None = None
    label_source: str | None = None
    trained_on: dict | None = None
    image_encoder_datasets: list | None = None  # every collection whose images the image encoder has seen
    training_config: dict | None = None
    refits: list | None = None
    # metrics recorded when the weights were made
    test_summary: dict | None = None
    val: dict | None = None
    timings: dict | None = None
    external_validation: dict | None = None
    # per-finding Platt maps on the probability (core.model.recalibration_maps; fitted by
    # core.evaluation.recalibration): mode -> head -> finding -> PlattMap or NotCalibrated; None: none
    recalibration: Recalibration | None = None
    # operating points by target (core.evaluation.operating_targets): rule, default, choices,
    # points (mode -> finding -> target name -> {threshold, sensitivity, specificity, CIs, ppv, source, test})
    operating_points: OperatingPoints | None = None
    # a site's adaptation (core.evaluation.site_adapt): site, studies, date, label source, what was refitted
    site_adaptation: dict | None = None
    content_sha256: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a block given as the JSON dict (a tool or a test building a description by hand) is typed here,
        # so every reader meets the types
        for name, block in {**BLOCKS, "recalibration": Recalibration}.items():
            if isinstance(getattr(self, name), dict):
                object.__setattr__(self, name, block.from_dict(getattr(self, name)))

    @classmethod
    def from_metadata(cls, metadata: dict | None) -> ModelDescription:
        """Read a metadata dict, old formats included (findings, heads and modes default to
        the code's constants where a file predates them)."""
        md = dict(metadata or {})
        facts = model_facts(md)
        kwargs = {key: md.pop(key) for key in _plain_fields() if key in md}
        for key in ("labels", "heads", "text_modes"):
            md.pop(key, None)
        pre = md.pop("preprocessing", None)
        return cls(findings=facts.findings, heads=facts.heads, text_modes=facts.text_modes,
                   preprocessing=Preprocessing.from_dict(pre) if pre else None, extra=md, **kwargs)

    def to_metadata(self) -> dict:
        """The metadata dict to write (keys whose value is None are left out)."""
        out = dict(self.extra)
        out.update(ModelFacts(self.findings, self.heads, self.text_modes).to_metadata())
        for key in _plain_fields():
            value = getattr(self, key)
            if value is not None:
                out[key] = value.to_dict() if hasattr(value, "to_dict") else value
        if self.preprocessing is not None:
            out["preprocessing"] = self.preprocessing.to_dict()
        return out

    def updated(self, **changes) -> ModelDescription:
        """A copy with some fields changed (the refit, calibration and training write through this)."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise TypeError(f"ModelDescription has no field(s) {sorted(unknown)}")
        return replace(self, **changes)

    def refitted(self, tag: str, *, script: str, what: str, when: str | None = None, stamp: str = "%Y%m%d",
                 strip: str | None = None, **changes) -> ModelDescription:
        """THE way a tool rewrites a model's description: the changes, a new version
        ``<base>+<tag><date>`` (``base``: the version before any earlier ``+<strip>`` suffix, by default this
        tag's own, so refitting twice does not stack) and one more entry in ``refits`` saying when, by what
        and what changed."""
        import time
        when = when or time.strftime("%Y-%m-%dT%H:%M:%S%z")
        base = (self.version or "unknown").split("+" + (strip if strip is not None else tag))[0]
        version = f"{base}+{tag}{time.strftime(stamp)}"
        entry = {"at": when, "script": script, "what": what}
        return self.updated(version=version, refits=[*(self.refits or []), entry], **changes)

    # -- reads every tool needs -------------------------------------------------------------
    def thresholds_for(self, mode: str, head: str) -> dict[str, float]:
        """finding -> threshold for one text mode and head ({} when the weights have none)."""
        return dict(((self.thresholds or {}).get(mode) or {}).get(head) or {})

    def split_uids(self, name: str) -> list[str] | None:
        """The report uids of one split (train / val / test), or None when the weights keep no split."""
        return None if self.split is None else list(self.split.get(name, []))

    @property
    def image_reliable(self) -> dict[str, bool]:
        block = self.evidence.image_reliable if self.evidence else {}
        return {f: bool(block.get(f, False)) for f in self.findings}

    @property
    def supported(self) -> list[str]:
        """The findings the image supports, in the weights' order (their evidence: ``image_reliable``)."""
        return [f for f, ok in self.image_reliable.items() if ok]

    @property
    def guard_fitted(self) -> bool:
        return bool((self.training_config or {}).get("fit_ood", False))



def _plain_fields() -> list[str]:
    """The fields stored in the JSON as they are, under their own name (the facts, the
    preprocessing and ``extra`` are converted)."""
    return [f.name for f in fields(ModelDescription)
            if f.name not in ("findings", "heads", "text_modes", "preprocessing", "extra")]


def read_description(weights_dir: Path) -> ModelDescription:
    """The typed description of the weights in ``weights_dir`` (torch-free)."""
    return ModelDescription.from_metadata(read_metadata(weights_dir))


def describe(metadata: dict | ModelDescription | None) -> ModelDescription:
    """The typed description of a metadata dict (or the description itself): what functions
    that take either call first, so they read typed fields only."""
    return metadata if isinstance(metadata, ModelDescription) else ModelDescription.from_metadata(metadata)
