"""What a training run is told: ``TrainConfig`` (the defaults table of scripts/train.py), the
command-line flags made from it (one builder for scripts/train.py and scripts/cv.py) and a split
file's check."""
from __future__ import annotations

import argparse
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

from core.data.labels import TEXT_MODES
from core.data.reports import DataLayoutError
from core.model.fusion import OFFLINE_TEXT_BACKBONE
from core.model.text_encoders import DEFAULT_FAMILY

NONE_MODE = TEXT_MODES.index("none")
UNFREEZE = ("auto", "text", "both", "none")


@dataclass
class TrainConfig:
    data: str
    out: str = "weights"
    run_dir: str = "runs/default"
    image_weights: str = "none"
    text_backbone: str = OFFLINE_TEXT_BACKBONE
    text_family: str = DEFAULT_FAMILY  # the text-encoder family (core/model/text_encoders/<family>.py)
    image_size: int = 128
    seed: int = 0
    batch_size: int = 32
    image_epochs: int = 30
    frozen_epochs: int = 40
    unfrozen_epochs: int = 5
    lr_head: float = 1e-3
    lr_image: float = 1e-3          # image phase (from scratch)
    lr_image_finetune: float = 1e-4  # unfrozen phase, pretrained image encoder
    lr_text: float = 3e-5
    weight_decay: float = 1e-4
    patience: int = 8               # epochs without a better validation score before a phase stops
    image_patience: int = 0         # image phase; 0 = never stop early, run the whole cosine schedule
    ema_decay: float = 0.995        # image phase: validate and keep averaged weights (0 = off)
    text_max_len: int = 160
    aux_terms: int = 24
    aux_weight: float = 0.5
    modality_dropout: float = 0.15
    use_automatic: bool = False
    max_reports: int = 0            # 0 = all (small values for smoke tests)
    unfreeze: str = "auto"          # auto | text | both | none
    log_every: int = 10
    fit_ood: bool = True
    split_file: str = ""            # JSON {"train": [uid...], "val": [...], "test": [...]}; "" = seeded split
    dataset: str = "openi"          # openi | mimic-cxr | chexpert | csv (core.data.sources)
    uncertain_policy: str = "ignore"  # uncertain (-1) labels: ignore | positive | negative (core.data.sources.policy)
    image_weights_datasets: str = ""  # comma-separated collections a pretrained image encoder saw ("" = from its name)
    loader_workers: int = 0         # processes that decode images (0 = in the main process)
    laterals: bool = False          # image phase also trains on the training reports' lateral views
                                    # (same labels; Open-I folders with lateral/, core.data.laterals)

    def unfreeze_parts(self) -> set[str]:
        if self.unfreeze == "auto":
            return {"text"} if self.image_weights == "none" else {"text", "image"}
        return {"none": set(), "text": {"text"}, "both": {"text", "image"}}[self.unfreeze]


# What each field means (scripts/train.py's --help shows these with the defaults above).
HELP: dict[str, str] = {
    "data": "the data folder (its layout: --dataset)",
    "out": "where the weights are written (model.safetensors, metadata.json, eval/)",
    "run_dir": "checkpoints (last.pt, to resume) and the run's files",
    "image_weights": "image encoder start: none (from scratch), imagenet, or a torchxrayvision/state-dict file",
    "text_backbone": "the text encoder's pretrained backbone (name or folder)",
    "text_family": "the text-encoder family (core/model/text_encoders/<family>.py)",
    "image_size": "square input size in pixels",
    "seed": "seed of the split, initialisation and augmentation",
    "batch_size": "studies per step",
    "image_epochs": "image phase epochs (from-scratch image encoder; one cosine schedule)",
    "frozen_epochs": "frozen phase epochs (heads on cached encoder features)",
    "unfrozen_epochs": "unfrozen phase epochs (encoders fine-tuned with lower learning rates)",
    "lr_head": "learning rate of the heads",
    "lr_image": "learning rate of the image encoder in the image phase",
    "lr_image_finetune": "learning rate of a pretrained image encoder in the unfrozen phase",
    "lr_text": "learning rate of the text encoder in the unfrozen phase",
    "weight_decay": "AdamW weight decay",
    "patience": "epochs without a better validation score before a phase stops",
    "image_patience": "image phase patience; 0 runs the whole cosine schedule",
    "ema_decay": "image phase: validate and keep exponentially averaged weights (0 = off)",
    "text_max_len": "word pieces the text encoder reads (its two markers included)",
    "aux_terms": "auxiliary MeSH terms predicted in the image phase (extra supervision)",
    "aux_weight": "weight of the auxiliary loss",
    "modality_dropout": "share of training samples whose text is hidden (teaches image-only reading)",
    "use_automatic": "also use the reports' automatic MeSH terms as labels",
    "max_reports": "read only the first N reports (0 = all; smoke tests)",
    "unfreeze": "what the unfrozen phase trains: auto, text, both or none",
    "log_every": "steps between run-log entries",
    "fit_ood": "fit the out-of-distribution guard on the training images",
    "split_file": "a JSON split {train, val, test: [uid...]} ('' = the seeded split by report)",
    "dataset": "layout of --data (core.data.sources)",
    "uncertain_policy": "uncertain (-1) labels: ignore, positive or negative",
    "image_weights_datasets": "comma-separated collections a pretrained image encoder saw ('' = from its name)",
    "loader_workers": "processes that decode images (0 = in the main process)",
    "laterals": "the image phase also trains on the training reports' lateral views",
}


def choices() -> dict[str, list[str]]:
    """The fields whose value is one of a list (their flags refuse anything else)."""
    from core.data.sources import DATASETS
    from core.data.sources.policy import UNCERTAIN_POLICIES
    return {"unfreeze": list(UNFREEZE), "dataset": list(DATASETS), "uncertain_policy": list(UNCERTAIN_POLICIES)}


def add_config_arguments(parser: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> None:
    """One flag per ``TrainConfig`` field (``lr_head`` -> ``--lr-head``) with its default, help and
    choices; a boolean is ``--x`` / ``--no-x``; a field without a default is required. Fields in
    ``skip`` get no flag (the caller sets them)."""
    options = choices()
    for f in fields(TrainConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=HELP[f.name])
            continue
        kwargs = {"required": True} if f.default is MISSING else {"default": f.default}
        if f.name in options:
            kwargs["choices"] = options[f.name]
        kind = {"int": int, "float": float}.get(str(f.type), str)
        parser.add_argument(flag, type=kind, help=HELP[f.name], **kwargs)


def config_from_args(args: argparse.Namespace, **overrides) -> TrainConfig:
    """The TrainConfig the parsed flags say; ``overrides`` set the fields given no flag."""
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    return TrainConfig(**{**values, **overrides})


def load_split(path: str, reports) -> dict[str, list[str]]:
    """A split written by scripts/cv.py (or by hand): uids per split, each known, none twice."""
    import json
    split = json.loads(Path(path).read_text())
    known = {r.uid for r in reports}
    seen: set[str] = set()
    for name in ("train", "val", "test"):
        uids = [str(u) for u in split.get(name, [])]
        if set(uids) - known or seen & set(uids):
            raise DataLayoutError(f"{path}: split {name!r} names unknown or repeated reports; "
                                  "fix the file or drop --split-file")
        seen |= set(uids)
        split[name] = uids
    return {k: split[k] for k in ("train", "val", "test")}

