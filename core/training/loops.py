"""The epoch loop every phase shares (``EpochLoop.run`` over a ``Phase``): early stopping,
best-state restore, checkpointing, logging; and the loss and learning-rate schedule it uses."""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from core.training.distributed import Process, broadcast_float, shard
from core.training.ema import WeightAverage
from core.training.run_log import RunLog


def pos_weights(labels: torch.Tensor) -> torch.Tensor:
    """Class-imbalance weights: sqrt(neg/pos), capped, so rare findings are not drowned.
    Labels the loss ignores (NaN, uncertain-label policy ``ignore``) count on neither side."""
    known = ~torch.isnan(labels)
    pos = torch.nan_to_num(labels).sum(0).clamp(min=1)
    neg = (known.sum(0) - pos).clamp(min=0)
    return (neg / pos).sqrt().clamp(max=10.0)


def wrap(net: nn.Module, world: int) -> nn.Module:
    """The network each process trains: DistributedDataParallel when there are several."""
    if world > 1:
        return nn.parallel.DistributedDataParallel(net, find_unused_parameters=True)
    return net


def autocast(cuda: bool):
    return torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)


def bce(logits, y, pos_weight, mask=None):
    """Weighted binary cross-entropy; NaN targets (the uncertain-label policy ``ignore``) count
    nowhere, and ``mask`` weights whole samples (e.g. the text head where a text was given)."""
    known = ~torch.isnan(y)
    if not bool(known.all()):  # labels the uncertain-label policy ignores
        loss = F.binary_cross_entropy_with_logits(logits.float(), torch.nan_to_num(y), pos_weight=pos_weight,
                                                  reduction="none") * known
        per_sample = loss.sum(1) / known.sum(1).clamp(min=1)
        if mask is not None:
            return (per_sample * mask).sum() / mask.sum().clamp(min=1)
        return per_sample.mean()
    loss = F.binary_cross_entropy_with_logits(logits.float(), y, pos_weight=pos_weight, reduction="none")
    if mask is not None:
        return (loss.mean(1) * mask).sum() / mask.sum().clamp(min=1)
    return loss.mean()


def cosine(opt, total_steps: int, warmup: int):
    """Linear warm-up, then a cosine decay to zero over ``total_steps``."""
    def f(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total_steps - warmup))))
    return torch.optim.lr_scheduler.LambdaLR(opt, f)


@dataclass
class Phase:
    """One phase as the epoch loop runs it: ``make_opt()`` gives (optimiser, schedule),
    ``step(idx, epoch)`` a batch's loss, ``evaluate()`` the validation (score, detail)."""
    name: str
    epochs: int
    n_train: int
    make_opt: Callable
    step: Callable
    evaluate: Callable
    average: WeightAverage | None = None  # validate (and keep) the averaged weights
    patience: int | None = None           # None: the config's
    after: Callable | None = None         # run once the best state is back in the model


# (phase, epoch, extra) -> None: writes the run's checkpoint (rank 0)
SaveState = Callable[[str, int, dict], None]


class EpochLoop:
    """The loop every phase shares: shards, steps, early stopping, best-state restore,
    checkpoints, progress and the run log. It holds only what does not change between phases."""

    def __init__(self, cfg, process: Process, log: RunLog | None, timings: dict) -> None:
        self.cfg, self.process, self.log, self.timings = cfg, process, log, timings

    def _log_step(self, phase, epoch, step, loss, opt, bar, seen, t0, total_steps, done_steps):
        rate = seen / max(time.time() - t0, 1e-6)
        lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(opt.param_groups)}
        eta = (total_steps - done_steps) * (time.time() - t0) / max(step + 1, 1) if total_steps else None
        bar.set_postfix(loss=f"{loss:.4f}", sps=f"{rate:.1f}")
        if self.log and step % self.cfg.log_every == 0:
            self.log.step(phase=phase, epoch=epoch, step=step, loss=loss, lrs=lrs, samples_per_s=rate, eta_s=eta)

    def run(self, model: nn.Module, spec: Phase, resume_state: dict | None, save: SaveState) -> float:
        """Train ``model`` through ``spec``'s epochs (resuming mid-phase from ``resume_state``
        when it is this phase's), leave the best validated state in it and return its score."""
        cfg, world, main = self.cfg, self.process.world, self.process.main
        phase, epochs, n_train, average = spec.name, spec.epochs, spec.n_train, spec.average
        patience = spec.patience or cfg.patience
        opt, sched = spec.make_opt()
        start, best, best_state, bad = 0, -1.0, None, 0
        rs = resume_state
        steps_per_epoch = math.ceil(math.ceil(n_train / world) / cfg.batch_size)
        if rs and rs["phase"] == phase:
            opt.load_state_dict(rs["opt"])
            sched.load_state_dict(rs["sched"])
            start, best, bad = rs["epoch"] + 1, rs["best"], rs["bad"]
            if rs.get("world", 1) != world:  # resumed on another number of processes: same point
                sched.last_epoch = start * steps_per_epoch  # of the schedule, in this run's steps per epoch
                for group, base, f in zip(opt.param_groups, sched.base_lrs, sched.lr_lambdas, strict=True):
                    group["lr"] = base * f(sched.last_epoch)
                if main:
                    print(f"{phase}: checkpoint from {rs.get('world', 1)} process(es), resuming on {world}")
            best_state = rs.get("best_state")
            if average is not None and rs.get("average") is not None:
                average.load_state_dict(rs["average"])
        else:  # a phase must not end worse than it started: the incoming state is the first candidate
            best = broadcast_float(spec.evaluate()[0])
            best = best if best == best else -1.0  # NaN (a class missing from val) counts as no score
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        for epoch in range(start, epochs):
            t0 = time.time()
            order = shard(n_train, epoch, cfg.seed, self.process.rank, world)
            bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"{phase} {epoch + 1}/{epochs}",
                       disable=not main, leave=False)
            total, seen = 0.0, 0
            for step, i in enumerate(bar):
                idx = order[i:i + cfg.batch_size]
                if len(idx) < 2:  # BatchNorm cannot train on a single sample
                    continue
                loss = spec.step(idx, epoch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                if average is not None:
                    average.update()
                total += loss.item() * len(idx)
                seen += len(idx)
                done = epoch * steps_per_epoch + step
                self._log_step(phase, epoch, step, loss.item(), opt, bar, seen * world, t0,
                               epochs * steps_per_epoch, done)
            seconds = time.time() - t0
            with average.applied() if average is not None else contextlib.nullcontext():
                score, detail = spec.evaluate()
                score = broadcast_float(score)
                improved = score > best + 1e-4
                if improved:
                    best, bad = score, 0
                    best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                else:
                    bad += 1
            if main:
                sps = seen * world / seconds
                self.timings.setdefault(f"{phase}_samples_per_s", [])
                self.timings[f"{phase}_samples_per_s"].append(sps)
                print(f"{phase} epoch {epoch + 1}/{epochs}: loss {total / max(seen, 1):.4f}, val {score:.4f}"
                      f"{' *' if improved else ''}, {seconds:.0f}s ({sps:.0f} samples/s)", flush=True)
                if self.log:
                    self.log.epoch(phase=phase, epoch=epoch, val_auc=detail, val_macro_auc=score,
                                   train_loss=total / max(seen, 1), seconds=seconds, samples_per_s=sps)
            save(phase, epoch, {"opt": opt.state_dict(), "sched": sched.state_dict(), "best": best, "bad": bad,
                                "best_state": best_state,
                                "average": average.state_dict() if average is not None else None})
            if bad >= patience:
                if main:
                    print(f"{phase}: early stop after epoch {epoch + 1} (best val {best:.4f})")
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        return best
