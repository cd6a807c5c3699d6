"""Trainer: one training run, the phases of core.training joined."""
from __future__ import annotations

import time

from core.model.checkpoint import round_to_storage
from core.training.calibration import Calibration
from core.training.config import NONE_MODE, TrainConfig, load_split
from core.training.distributed import broadcast_float, dist_info, seed_everything, shard
from core.training.loops import Loops, pos_weights
from core.training.nets import HeadsNet, ImagePhaseNet
from core.training.phases import Phases
from core.training.setup import Setup

__all__ = ["NONE_MODE", "HeadsNet", "ImagePhaseNet", "TrainConfig", "Trainer", "broadcast_float", "dist_info",
           "load_split", "pos_weights", "seed_everything", "shard"]


class Trainer(Setup, Phases, Loops, Calibration):
    """One training run: ``Trainer(cfg).fit()`` runs the planned phases (resuming an interrupted
    one), then calibrates on validation."""

    def fit(self) -> dict:
        cfg = self.cfg
        t_start = time.time()
        rs = self.resume_state
        self.done_phases = list(rs["done_phases"]) if rs else []
        self.best = {}
        plan = []
        if cfg.image_weights == "none" and cfg.image_epochs > 0:
            plan.append(("image", self.phase_image))
        if cfg.frozen_epochs > 0:
            plan.append(("frozen", self.phase_frozen))
        if cfg.unfrozen_epochs > 0 and cfg.unfreeze_parts():
            plan.append(("unfrozen", self.phase_unfrozen))
        for name, fn in plan:
            if name in self.done_phases:
                continue
            if self.log:
                self.log.update(phase=name)
            t0 = time.time()
            fn()
            self.timings[f"{name}_s"] = time.time() - t0
            self.resume_state = None  # only the interrupted phase resumes mid-way
        round_to_storage(self.model)
        self.cache_features()  # the restored best state may differ from the last cached one
        thresholds = self.calibrate()
        val_score, val_detail = self.eval_heads("val")
        self.timings["total_s"] = time.time() - t_start
        return {"thresholds": thresholds, "val_score": val_score, "val_auc": val_detail}
