"""A run's starting point: its data (split, image bank, labels), its model, and the
checkpoint it resumes from (``<run_dir>/last.pt``)."""
from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path

import torch

from core.data.image_bank import ImageBank, Samples, aux_matrix, label_matrix, mode_texts
from core.data.preprocess import normalise
from core.data.reports import DataLayoutError, auxiliary_vocabulary, split_reports
from core.errors import RunStateError
from core.model.fusion import ModelConfig, build_model, image_weights_info
from core.training.config import TrainConfig, load_split
from core.training.distributed import dist_info, seed_everything
from core.training.loops import pos_weights
from core.training.run_log import RunLog


class Setup:
    """Data, model and resumable state; the first base of ``Trainer``."""

    def __init__(self, cfg: TrainConfig, *, runlog: bool = True) -> None:
        self.cfg = cfg
        self.rank, self.world, self.device = dist_info()
        self.main = self.rank == 0
        self.cuda = self.device.type == "cuda"
        seed_everything(cfg.seed)
        self.run_dir = Path(cfg.run_dir)
        self.state_path = self.run_dir / "last.pt"
        self.resume_state = self._load_state()
        self._prepare_data()
        self._build_model()
        self.log = RunLog(name=self.run_dir.name, config=asdict(cfg)) if (self.main and runlog) else None
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ state
    def _load_state(self) -> dict | None:
        if self.state_path.is_file():
            state = torch.load(self.state_path, map_location="cpu", weights_only=True)
            if self.main:
                print(f"resuming from {self.state_path}: phase {state['phase']}, epoch {state['epoch']}")
            return state
        return None

    def _save_state(self, phase: str, epoch: int, done_phases: list[str], extra: dict) -> None:
        if not self.main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = {"phase": phase, "epoch": epoch, "done_phases": done_phases, "model": self.model.state_dict(),
                 "world": self.world, "split": self.split, "aux_vocab": self.aux_vocab, "mean": self.mean,
                 "std": self.std, **extra}
        tmp = self.state_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.state_path)

    # ------------------------------------------------------------------- data
    def _prepare_data(self) -> None:
        from core.data.sources import load_collection
        cfg = self.cfg
        self.collection = load_collection(cfg.dataset, Path(cfg.data), uncertain_policy=cfg.uncertain_policy,
                                          use_automatic=cfg.use_automatic, seed=cfg.seed)
        reports = self.collection.reports
        if cfg.max_reports:
            reports = reports[: cfg.max_reports]
        self.reports = reports
        self.image_prior = image_weights_info(cfg.image_weights, cfg.image_weights_datasets)
        if self.resume_state:
            self.split = self.resume_state["split"]
            self.aux_vocab = list(self.resume_state["aux_vocab"])
        else:
            if cfg.split_file:
                self.split = load_split(cfg.split_file, reports)
            elif self.collection.split is not None:  # official or by-patient split of the dataset
                kept = {r.uid for r in reports}
                self.split = {k: [u for u in self.collection.split.get(k, []) if u in kept]
                              for k in ("train", "val", "test")}
            else:
                self.split = split_reports(reports, seed=cfg.seed)
            train_reports = [r for r in reports if r.uid in set(self.split["train"])]
            self.aux_vocab = auxiliary_vocabulary(train_reports, size=cfg.aux_terms,
                                                  min_count=5 if cfg.max_reports else 15)
        needed = [i for r in reports for i in r.image_ids]
        t0 = time.time()
        self.bank = ImageBank.build(Path(cfg.data), needed, cfg.image_size, paths=self.collection.image_paths,
                                    workers=cfg.loader_workers)
        index = self.bank.index()
        self.samples = {s: Samples.build(reports, self.split[s], index) for s in ("train", "val", "test")}
        self.lateral_rows: dict[str, list[int]] = {}  # uid -> bank rows of its laterals (cfg.laterals)
        if cfg.laterals:
            self._add_laterals(reports)
        if self.resume_state:
            self.mean, self.std = self.resume_state["mean"], self.resume_state["std"]
        elif self.image_prior["mean"] is not None:  # a pretrained encoder's own input scaling
            self.mean, self.std = self.image_prior["mean"], self.image_prior["std"]
        else:
            self.mean, self.std = self.bank.stats(self.samples["train"].image_rows)
        self.labels = label_matrix(reports)  # 0/1: evaluation, calibration, prevalence
        # what the loss trains on: the same, with NaN where the uncertain-label policy says
        # ``ignore`` in the training split (validation and test keep a binary label)
        self.targets = self.labels.clone()
        train_idx = {k for k in self.samples["train"].report_idx}
        for k, r in enumerate(reports):
            if k in train_idx and r.label_mask:
                for j, m in enumerate(r.label_mask):
                    if not m:
                        self.targets[k, j] = float("nan")
        self.aux = aux_matrix(reports, self.aux_vocab)
        self.texts = mode_texts(reports)
        self.pos_weight = pos_weights(self.targets[self.samples["train"].report_idx]).to(self.device)
        if self.main:
            n = {s: (len(self.split[s]), len(self.samples[s])) for s in self.split}
            print(f"data: {len(reports)} reports with a frontal image, split (reports, images) {n}, "
                  f"images decoded in {time.time() - t0:.0f}s")

    def _add_laterals(self, reports) -> None:
        """Append every report's lateral views to the bank (ids ``lateral:<file stem>``) and make
        ``samples["train_views"]``: the training split's frontal and lateral images, which the
        image phase trains on. Validation, calibration and the heads stay frontal."""
        from core.data.image_bank import decode_all
        from core.data.laterals import lateral_paths
        found = lateral_paths(Path(self.cfg.data), [r.uid for r in reports])
        if not found:
            raise DataLayoutError(f"--laterals: {self.cfg.data} has no lateral_manifest.csv with lateral/ files")
        files = [(uid, p) for uid, paths in found.items() for p in paths]
        start = len(self.bank.ids)
        pixels = decode_all([p for _, p in files], self.cfg.image_size, self.cfg.loader_workers)
        self.bank = ImageBank(ids=self.bank.ids + [f"lateral:{p.stem}" for _, p in files],
                              pixels=torch.cat([self.bank.pixels, pixels]))
        for k, (uid, _) in enumerate(files):
            self.lateral_rows.setdefault(uid, []).append(start + k)
        by_uid = {r.uid: k for k, r in enumerate(reports)}
        train = self.samples["train"]
        extra = [(by_uid[u], row) for u in self.split["train"] for row in self.lateral_rows.get(u, [])]
        self.samples["train_views"] = Samples(train.report_idx + [k for k, _ in extra],
                                              train.image_rows + [row for _, row in extra])
        if self.main:
            print(f"laterals: {len(files)} decoded, {len(extra)} in the training split")

    def _build_model(self) -> None:
        cfg = self.cfg
        mc = ModelConfig(text_backbone=cfg.text_backbone, text_type=cfg.text_family, num_aux=len(self.aux_vocab))
        image_weights = cfg.image_weights if not self.resume_state else "none"  # resumed: the checkpoint has them
        self.model, self.tokenizer = build_model(mc, image_weights=image_weights)
        if self.resume_state:
            missing, unexpected = self.model.load_state_dict(self.resume_state["model"], strict=False)
            if unexpected or set(missing) - {"late_weights"}:  # checkpoints from before late fusion lack it
                raise RunStateError(f"{self.state_path} does not match this model; start a new --run-dir")
        # the backbone's own tables (BERT: the embeddings) stay frozen: they are not shipped (core.model.checkpoint)
        tuned = {id(p) for p in self.model.text_encoder.tuned_parameters()}
        for p in self.model.text_encoder.parameters():
            if id(p) not in tuned:
                p.requires_grad_(False)
        self.model.to(self.device)

    def pixels(self, rows) -> torch.Tensor:
        return normalise(self.bank.pixels[rows], self.mean, self.std)
