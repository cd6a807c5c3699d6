"""Trainer: one training run, composed of the parts of core.training, each given what it needs."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict

from core.model.checkpoint import round_to_storage
from core.training.config import NONE_MODE, TrainConfig, load_split
from core.training.distributed import Process, broadcast_float, dist_info, seed_everything, shard
from core.training.loops import EpochLoop, Phase, pos_weights
from core.training.nets import HeadsNet, ImagePhaseNet
from core.training.phases import HeadsStep, frozen_phase, image_phase, unfrozen_phase
from core.training.run_log import RunLog
from core.training.setup import Checkpoint, RunData, build_run_model, prepare_data
from core.training.temperature_scaling import fit_temperature_scaling
from core.training.validation import FeatureCache, eval_heads

__all__ = ["NONE_MODE", "HeadsNet", "ImagePhaseNet", "RunData", "TrainConfig", "Trainer", "broadcast_float",
           "dist_info", "load_split", "pos_weights", "seed_everything", "shard"]


class Trainer:
    """One training run: ``Trainer(cfg).fit()`` runs the planned phases (resuming an interrupted
    one), then fits temperature scaling on validation. Its parts: ``process`` (rank, device),
    ``checkpoint``, ``data``, ``model``/``tokenizer``, ``features`` (cached encoder outputs),
    ``loop`` (the epoch loop), ``log`` (the run log, rank 0) and ``timings``."""

    def __init__(self, cfg: TrainConfig, *, runlog: bool = True) -> None:
        self.cfg = cfg
        self.process = Process.current()
        seed_everything(cfg.seed)
        self.checkpoint = Checkpoint(cfg.run_dir, self.process)
        self.resume_state = self.checkpoint.load()
        self.data = prepare_data(cfg, self.process, self.resume_state)
        self.model, self.tokenizer = build_run_model(cfg, len(self.data.aux_vocab), self.resume_state,
                                                     self.checkpoint.path, self.process.device)
        name = self.checkpoint.run_dir.name
        self.log = RunLog(name=name, config=asdict(cfg)) if (self.process.main and runlog) else None
        self.timings: dict = {}
        self.features = FeatureCache(self.model, self.tokenizer, self.data, cfg.text_max_len, self.process.device,
                                     self.timings)
        self.loop = EpochLoop(cfg, self.process, self.log, self.timings)

    def _plan(self, done_phases: list[str]) -> list[tuple[str, Callable[[], Phase]]]:
        """(name, build) per planned phase; ``build`` readies the model and returns its Phase."""
        cfg, model, data, process, cache = self.cfg, self.model, self.data, self.process, self.features
        heads_step = HeadsStep(cfg, data, cache, self.tokenizer, process)
        plan: list[tuple[str, Callable[[], Phase]]] = []
        if cfg.image_weights == "none" and cfg.image_epochs > 0:
            plan.append(("image", lambda: image_phase(cfg, model, data, process)))
        if cfg.frozen_epochs > 0:
            plan.append(("frozen", lambda: frozen_phase(cfg, model, data, process, cache, heads_step,
                                                        image_phase_ran="image" in done_phases)))
        if cfg.unfrozen_epochs > 0 and cfg.unfreeze_parts():
            plan.append(("unfrozen", lambda: unfrozen_phase(cfg, model, data, process, cache, heads_step,
                                                            image_phase_ran="image" in done_phases)))
        return plan

    def fit(self) -> dict:
        model, data = self.model, self.data
        t_start = time.time()
        rs = self.resume_state
        done_phases = list(rs["done_phases"]) if rs else []
        self.best: dict[str, float] = {}

        def save(phase: str, epoch: int, extra: dict) -> None:
            self.checkpoint.save(phase, epoch, done_phases, model, data, extra)

        for name, build in self._plan(done_phases):
            if name in done_phases:
                continue
            if self.log:
                self.log.update(phase=name)
            t0 = time.time()
            phase = build()
            self.best[name] = self.loop.run(model, phase, self.resume_state, save)
            done_phases.append(name)
            save(f"{name}:done", -1, {})
            if phase.after is not None:
                phase.after()
            self.timings[f"{name}_s"] = time.time() - t0
            self.resume_state = None  # only the interrupted phase resumes mid-way
        round_to_storage(model)
        self.features.refresh()  # the restored best state may differ from the last cached one
        thresholds = fit_temperature_scaling(model, data, self.features)
        val_score, val_detail = eval_heads(model, data, self.features, "val")
        self.timings["total_s"] = time.time() - t_start
        return {"thresholds": thresholds, "val_score": val_score, "val_auc": val_detail}
