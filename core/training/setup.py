"""A run's starting point, as three parts ``Trainer`` holds: the checkpoint it resumes from
(``<run_dir>/last.pt``), its data (split, image bank, labels) and its model."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.data.image_bank import ImageBank, Samples, aux_matrix, label_matrix, mode_texts
from core.data.preprocess import normalise
from core.data.reports import DataLayoutError, auxiliary_vocabulary, split_reports
from core.errors import RunStateError
from core.model.fusion import ModelConfig, build_model, image_weights_info
from core.training.config import TrainConfig, load_split
from core.training.distributed import Process
from core.training.loops import pos_weights


class Checkpoint:
    """``<run_dir>/last.pt``: read once at the start, rewritten (atomically, by rank 0) after
    every epoch and phase."""

    def __init__(self, run_dir: Path, process: Process) -> None:
        self.run_dir, self.process = Path(run_dir), process
        self.path = self.run_dir / "last.pt"

    def load(self) -> dict | None:
        if self.path.is_file():
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            if self.process.main:
                print(f"resuming from {self.path}: phase {state['phase']}, epoch {state['epoch']}")
            return state
        return None

    def save(self, phase: str, epoch: int, done_phases: list[str], model: torch.nn.Module, data: RunData,
             extra: dict) -> None:
        if not self.process.main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = {"phase": phase, "epoch": epoch, "done_phases": done_phases, "model": model.state_dict(),
                 "world": self.process.world, "split": data.split, "aux_vocab": data.aux_vocab, "mean": data.mean,
                 "std": data.std, **extra}
        tmp = self.path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)


@dataclass
class RunData:
    """What a run trains and validates on; built once by ``prepare_data``, read by every phase."""
    collection: object
    reports: list
    image_prior: dict
    split: dict[str, list[str]]
    aux_vocab: list[str]
    bank: ImageBank
    samples: dict[str, Samples]
    mean: object
    std: object
    labels: torch.Tensor       # 0/1: evaluation, temperature scaling, prevalence
    targets: torch.Tensor      # what the loss trains on: NaN where the uncertain-label policy ignores
    aux: torch.Tensor
    texts: dict
    pos_weight: torch.Tensor
    lateral_rows: dict[str, list[int]] = field(default_factory=dict)  # uid -> bank rows of its laterals

    def pixels(self, rows) -> torch.Tensor:
        return normalise(self.bank.pixels[rows], self.mean, self.std)


def prepare_data(cfg: TrainConfig, process: Process, resume_state: dict | None) -> RunData:
    """The collection, its split (a resumed run keeps the checkpoint's), the decoded images and
    the label matrices."""
    from core.data.sources import load_collection
    collection = load_collection(cfg.dataset, Path(cfg.data), uncertain_policy=cfg.uncertain_policy,
                                 use_automatic=cfg.use_automatic, seed=cfg.seed)
    reports = collection.reports
    if cfg.max_reports:
        reports = reports[: cfg.max_reports]
    image_prior = image_weights_info(cfg.image_weights, cfg.image_weights_datasets)
    if resume_state:
        split = resume_state["split"]
        aux_vocab = list(resume_state["aux_vocab"])
    else:
        if cfg.split_file:
            split = load_split(cfg.split_file, reports)
        elif collection.split is not None:  # official or by-patient split of the dataset
            kept = {r.uid for r in reports}
            split = {k: [u for u in collection.split.get(k, []) if u in kept] for k in ("train", "val", "test")}
        else:
            split = split_reports(reports, seed=cfg.seed)
        train_reports = [r for r in reports if r.uid in set(split["train"])]
        aux_vocab = auxiliary_vocabulary(train_reports, size=cfg.aux_terms, min_count=5 if cfg.max_reports else 15)
    needed = [i for r in reports for i in r.image_ids]
    t0 = time.time()
    bank = ImageBank.build(Path(cfg.data), needed, cfg.image_size, paths=collection.image_paths,
                           workers=cfg.loader_workers)
    index = bank.index()
    samples = {s: Samples.build(reports, split[s], index) for s in ("train", "val", "test")}
    lateral_rows: dict[str, list[int]] = {}
    if cfg.laterals:
        bank = _add_laterals(cfg, process, reports, split, bank, samples, lateral_rows)
    if resume_state:
        mean, std = resume_state["mean"], resume_state["std"]
    elif image_prior["mean"] is not None:  # a pretrained encoder's own input scaling
        mean, std = image_prior["mean"], image_prior["std"]
    else:
        mean, std = bank.stats(samples["train"].image_rows)
    labels = label_matrix(reports)
    # the loss's targets: the labels, with NaN where the uncertain-label policy says ``ignore``
    # in the training split (validation and test keep a binary label)
    targets = labels.clone()
    train_idx = set(samples["train"].report_idx)
    for k, r in enumerate(reports):
        if k in train_idx and r.label_mask:
            for j, m in enumerate(r.label_mask):
                if not m:
                    targets[k, j] = float("nan")
    data = RunData(collection=collection, reports=reports, image_prior=image_prior, split=split, aux_vocab=aux_vocab,
                   bank=bank, samples=samples, mean=mean, std=std, labels=labels, targets=targets,
                   aux=aux_matrix(reports, aux_vocab), texts=mode_texts(reports),
                   pos_weight=pos_weights(targets[samples["train"].report_idx]).to(process.device),
                   lateral_rows=lateral_rows)
    if process.main:
        n = {s: (len(split[s]), len(samples[s])) for s in split}
        print(f"data: {len(reports)} reports with a frontal image, split (reports, images) {n}, "
              f"images decoded in {time.time() - t0:.0f}s")
    return data


def _add_laterals(cfg: TrainConfig, process: Process, reports, split, bank: ImageBank, samples: dict,
                  lateral_rows: dict[str, list[int]]) -> ImageBank:
    """The bank with every report's lateral views appended (ids ``lateral:<file stem>``); fills
    ``lateral_rows`` and ``samples["train_views"]``: the training split's frontal and lateral
    images, which the image phase trains on. Validation, temperature scaling and the heads stay frontal."""
    from core.data.image_bank import decode_all
    from core.data.laterals import lateral_paths
    found = lateral_paths(Path(cfg.data), [r.uid for r in reports])
    if not found:
        raise DataLayoutError(f"--laterals: {cfg.data} has no lateral_manifest.csv with lateral/ files")
    files = [(uid, p) for uid, paths in found.items() for p in paths]
    start = len(bank.ids)
    pixels = decode_all([p for _, p in files], cfg.image_size, cfg.loader_workers)
    bank = ImageBank(ids=bank.ids + [f"lateral:{p.stem}" for _, p in files], pixels=torch.cat([bank.pixels, pixels]))
    for k, (uid, _) in enumerate(files):
        lateral_rows.setdefault(uid, []).append(start + k)
    by_uid = {r.uid: k for k, r in enumerate(reports)}
    train = samples["train"]
    extra = [(by_uid[u], row) for u in split["train"] for row in lateral_rows.get(u, [])]
    samples["train_views"] = Samples(train.report_idx + [k for k, _ in extra],
                                     train.image_rows + [row for _, row in extra])
    if process.main:
        print(f"laterals: {len(files)} decoded, {len(extra)} in the training split")
    return bank


def build_run_model(cfg: TrainConfig, n_aux: int, resume_state: dict | None, checkpoint: Path,
                    device: torch.device):
    """(model, tokenizer) on ``device``: a resumed run's weights come from its checkpoint."""
    mc = ModelConfig(text_backbone=cfg.text_backbone, text_type=cfg.text_family, num_aux=n_aux)
    image_weights = cfg.image_weights if not resume_state else "none"  # resumed: the checkpoint has them
    model, tokenizer = build_model(mc, image_weights=image_weights)
    if resume_state:
        missing, unexpected = model.load_state_dict(resume_state["model"], strict=False)
        if unexpected or set(missing) - {"late_weights"}:  # checkpoints from before late fusion lack it
            raise RunStateError(f"{checkpoint} does not match this model; start a new --run-dir")
    # the backbone's own tables (BERT: the embeddings) stay frozen: they are not shipped (core.model.checkpoint)
    tuned = {id(p) for p in model.text_encoder.tuned_parameters()}
    for p in model.text_encoder.parameters():
        if id(p) not in tuned:
            p.requires_grad_(False)
    model.to(device)
    return model, tokenizer
