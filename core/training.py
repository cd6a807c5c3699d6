"""Training schedule for the late-fusion model.

Phases (each resumable from ``<run_dir>/last.pt``):

1. ``image``    - only when the image encoder starts from scratch (``--image-weights none``):
                  DenseNet-121 + image head + auxiliary MeSH heads on augmented images;
                  the whole cosine schedule runs, validated on a moving average of the weights.
2. ``frozen``   - both encoders frozen; their features are computed once and cached, and
                  the text and fusion heads train on the cache (modality dropout, text mode
                  drawn per sample from report / indication / none); the image head too
                  when no image phase ran.
3. ``unfrozen`` - the text encoder (and the image encoder when it was pretrained) trains
                  with lower learning rates than the heads (differential learning rates).

Then late-fusion weights, temperatures and thresholds are fitted on validation. Early
stopping on validation macro AUC in the frozen and unfrozen phases; every phase keeps its
best validated state.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from core.checkpoint import round_to_storage
from core.data import auxiliary_vocabulary, split_reports
from core.dataset import ImageBank, Samples, augment, aux_matrix, label_matrix, mode_texts, normalise
from core.ema import WeightAverage
from core.inference import image_features, report_logits, report_probabilities, text_features
from core.labels import FINDINGS, TEXT_MODES
from core.metrics import fit_temperature, macro_auc, safe_auc
from core.operating import operating_threshold
from core.model import OFFLINE_TEXT_BACKBONE, ModelConfig, build_model, image_weights_info
from core.runlog import RunLog

NONE_MODE = TEXT_MODES.index("none")


@dataclass
class TrainConfig:
    data: str
    out: str = "weights"
    run_dir: str = "runs/default"
    image_weights: str = "none"
    text_backbone: str = OFFLINE_TEXT_BACKBONE
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
    dataset: str = "openi"          # openi | mimic-cxr | chexpert | csv (core.sources)
    uncertain_policy: str = "ignore"  # uncertain (-1) labels: ignore | positive | negative (core.sources.policy)
    image_weights_datasets: str = ""  # comma-separated collections a pretrained image encoder saw ("" = from its name)
    loader_workers: int = 0         # processes that decode images (0 = in the main process)

    def unfreeze_parts(self) -> set[str]:
        if self.unfreeze == "auto":
            return {"text"} if self.image_weights == "none" else {"text", "image"}
        return {"none": set(), "text": {"text"}, "both": {"text", "image"}}[self.unfreeze]


def load_split(path: str, reports) -> dict[str, list[str]]:
    """A split written by scripts/cv.py (or by hand): uids per split, each known, none twice."""
    import json
    split = json.loads(Path(path).read_text())
    known = {r.uid for r in reports}
    seen: set[str] = set()
    for name in ("train", "val", "test"):
        uids = [str(u) for u in split.get(name, [])]
        if set(uids) - known or seen & set(uids):
            raise ValueError(f"{path}: split {name!r} names unknown or repeated reports")
        seen |= set(uids)
        split[name] = uids
    return {k: split[k] for k in ("train", "val", "test")}


# ------------------------------------------------------------ distributed helpers
def dist_info() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    return rank, world, device


def broadcast_float(value: float) -> float:
    if not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.broadcast(t, 0)
    return float(t.item())


def shard(n: int, epoch: int, seed: int, rank: int, world: int) -> list[int]:
    """A seeded permutation of range(n), split evenly across ranks (DistributedSampler-like)."""
    g = torch.Generator().manual_seed(seed * 1000 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    per = math.ceil(n / world)
    perm = (perm + perm[: per * world - n])[rank::world]
    return perm


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pos_weights(labels: torch.Tensor) -> torch.Tensor:
    """Class-imbalance weights: sqrt(neg/pos), capped, so rare findings are not drowned.
    Labels the loss ignores (NaN, uncertain-label policy ``ignore``) count on neither side."""
    known = ~torch.isnan(labels)
    pos = torch.nan_to_num(labels).sum(0).clamp(min=1)
    neg = (known.sum(0) - pos).clamp(min=0)
    return (neg / pos).sqrt().clamp(max=10.0)


# --------------------------------------------------------------- phase networks
class ImagePhaseNet(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        feats = self.model.image_encoder.forward_features(x)
        z = self.model.image_proj(feats)
        aux = self.model.aux_head(feats) if self.model.aux_head is not None else None
        return self.model.image_head(z), aux


class HeadsNet(nn.Module):
    def __init__(self, model, train_text: bool = False, train_image: bool = False):
        super().__init__()
        self.model, self.train_text, self.train_image = model, train_text, train_image

    def forward(self, img, txt, mode, drop_image):
        if self.train_image:
            img = self.model.image_encoder.forward_features(img)
        if self.train_text:
            ids, mask = txt
            txt = self.model.text_encoder.forward_features(ids, mask)
        img_for_fusion = img * (1 - drop_image[:, None])
        out = self.model.forward_heads(img_for_fusion, txt, mode)
        out["image"] = self.model.image_head(self.model.image_proj(img))  # image head never loses its image
        return out


class Trainer:
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
                 "world": self.world, "split": self.split, "aux_vocab": self.aux_vocab, "mean": self.mean, "std": self.std, **extra}
        tmp = self.state_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.state_path)

    # ------------------------------------------------------------------- data
    def _prepare_data(self) -> None:
        from core.sources import load_collection
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

    def _build_model(self) -> None:
        cfg = self.cfg
        mc = ModelConfig(text_backbone=cfg.text_backbone, num_aux=len(self.aux_vocab))
        self.model, self.tokenizer = build_model(mc, image_weights=cfg.image_weights if not self.resume_state else "none")
        if self.resume_state:
            missing, unexpected = self.model.load_state_dict(self.resume_state["model"], strict=False)
            if unexpected or set(missing) - {"late_weights"}:  # checkpoints from before late fusion lack it
                raise RuntimeError(f"{self.state_path} does not match this model; start a new --run-dir")
        # the text embedding tables stay frozen: they are not shipped (see core.checkpoint)
        for p in self.model.text_encoder.encoder.embeddings.parameters():
            p.requires_grad_(False)
        self.model.to(self.device)

    def pixels(self, rows) -> torch.Tensor:
        return normalise(self.bank.pixels[rows], self.mean, self.std)

    # -------------------------------------------------------------- utilities
    def _wrap(self, net: nn.Module) -> nn.Module:
        if self.world > 1:
            return nn.parallel.DistributedDataParallel(net, find_unused_parameters=True)
        return net

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.cuda else torch.autocast("cpu", enabled=False)

    def _bce(self, logits, y, mask=None):
        known = ~torch.isnan(y)
        if not bool(known.all()):  # labels the uncertain-label policy ignores
            loss = F.binary_cross_entropy_with_logits(logits.float(), torch.nan_to_num(y), pos_weight=self.pos_weight,
                                                      reduction="none") * known
            per_sample = loss.sum(1) / known.sum(1).clamp(min=1)
            if mask is not None:
                return (per_sample * mask).sum() / mask.sum().clamp(min=1)
            return per_sample.mean()
        loss = F.binary_cross_entropy_with_logits(logits.float(), y, pos_weight=self.pos_weight, reduction="none")
        if mask is not None:
            return (loss.mean(1) * mask).sum() / mask.sum().clamp(min=1)
        return loss.mean()

    def _log_step(self, phase, epoch, step, loss, opt, bar, seen, t0, total_steps, done_steps):
        rate = seen / max(time.time() - t0, 1e-6)
        lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(opt.param_groups)}
        eta = (total_steps - done_steps) * (time.time() - t0) / max(step + 1, 1) if total_steps else None
        bar.set_postfix(loss=f"{loss:.4f}", sps=f"{rate:.1f}")
        if self.log and step % self.cfg.log_every == 0:
            self.log.step(phase=phase, epoch=epoch, step=step, loss=loss, lrs=lrs, samples_per_s=rate, eta_s=eta)

    def _cosine(self, opt, total_steps: int, warmup: int):
        def f(step):
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total_steps - warmup))))
        return torch.optim.lr_scheduler.LambdaLR(opt, f)

    # ------------------------------------------------------------- evaluation
    def eval_image(self, split: str = "val") -> tuple[float, list[float]]:
        s = self.samples[split]
        feats = image_features(self.model, self.pixels(s.image_rows), device=str(self.device))
        zeros = torch.zeros(len(self.reports), self.model.text_encoder.out_dim)
        probs = report_probabilities(self.model, feats, zeros, s.report_idx, len(self.reports), "none",
                                     calibrated=False)["image"]
        rows = sorted(set(s.report_idx))
        Y, P = self.labels[rows].numpy(), probs[rows]
        aucs = [safe_auc(Y[:, k], P[:, k]) for k in range(len(FINDINGS))]
        return macro_auc(Y, P), aucs

    def cache_features(self, splits=("train", "val")) -> None:
        """Frozen encoders: image features per image row, text features per report and mode."""
        t0 = time.time()
        rows = sorted({r for s in splits for r in self.samples[s].image_rows})
        feats = image_features(self.model, self.pixels(rows), device=str(self.device))
        self.img_cache = torch.zeros(len(self.bank.ids), feats.shape[1])
        self.img_cache[rows] = feats
        t1 = time.time()
        self.refresh_text_cache(splits)
        # what a frozen epoch would cost if the encoders were recomputed each time (forward
        # only): one image and, for two of the three text modes, one text per sample
        keep = {k for s in splits for k in self.samples[s].report_idx}
        n_text = sum(1 for m in ("report", "indication") for k in keep if self.texts[m][k])
        per_sample = (t1 - t0) / len(rows) + (2 / 3) * (time.time() - t1) / max(n_text, 1)
        self.timings["encoder_forward_samples_per_s"] = 1 / per_sample
        self.timings["cache_features_s"] = time.time() - t0

    def refresh_text_cache(self, splits=("train", "val")) -> None:
        keep = sorted({k for s in splits for k in self.samples[s].report_idx})
        self.txt_cache = {}
        for mode in TEXT_MODES:
            cache = torch.zeros(len(self.reports), self.model.text_encoder.out_dim)
            if mode != "none":
                texts = [self.texts[mode][k] for k in keep]
                cache[keep] = text_features(self.model, self.tokenizer, texts, max_len=self.cfg.text_max_len,
                                            device=str(self.device))
            self.txt_cache[mode] = cache

    def eval_heads(self, split: str = "val") -> tuple[float, dict]:
        """Mean over text modes of the fused macro AUC, and per mode/head AUCs."""
        s = self.samples[split]
        feats = self.img_cache[s.image_rows]
        rows = sorted(set(s.report_idx))
        Y = self.labels[rows].numpy()
        out = {}
        for mode in TEXT_MODES:
            probs = report_probabilities(self.model, feats, self.txt_cache[mode], s.report_idx, len(self.reports),
                                         mode, calibrated=False)
            out[mode] = {h: [safe_auc(Y[:, k], probs[h][rows][:, k]) for k in range(len(FINDINGS))]
                         for h in probs}
        score = float(np.mean([np.nanmean(out[m]["fusion"]) for m in TEXT_MODES]))
        return score, out

    # ----------------------------------------------------------------- phases
    def run_phase(self, phase: str, epochs: int, step_fn, make_opt, eval_fn, n_train: int,
                  average: WeightAverage | None = None, patience: int | None = None) -> None:
        """Generic epoch loop with early stopping, best-state restore and checkpointing.
        With ``average``, validation scores (and the best state keeps) the averaged weights."""
        cfg = self.cfg
        patience = patience or cfg.patience
        opt, sched = make_opt()
        start, best, best_state, bad = 0, -1.0, None, 0
        rs = self.resume_state
        steps_per_epoch = math.ceil(math.ceil(n_train / self.world) / cfg.batch_size)
        if rs and rs["phase"] == phase:
            opt.load_state_dict(rs["opt"])
            sched.load_state_dict(rs["sched"])
            start, best, bad = rs["epoch"] + 1, rs["best"], rs["bad"]
            if rs.get("world", 1) != self.world:  # resumed on another number of processes: same point
                sched.last_epoch = start * steps_per_epoch  # of the schedule, in this run's steps per epoch
                for group, base, f in zip(opt.param_groups, sched.base_lrs, sched.lr_lambdas):
                    group["lr"] = base * f(sched.last_epoch)
                if self.main:
                    print(f"{phase}: checkpoint from {rs.get('world', 1)} process(es), resuming on {self.world}")
            best_state = rs.get("best_state")
            if average is not None and rs.get("average") is not None:
                average.load_state_dict(rs["average"])
        else:  # a phase must not end worse than it started: the incoming state is the first candidate
            best = broadcast_float(eval_fn()[0])
            best = best if best == best else -1.0  # NaN (a class missing from val) counts as no score
            best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        steps_per_epoch = math.ceil(math.ceil(n_train / self.world) / cfg.batch_size)
        for epoch in range(start, epochs):
            t0 = time.time()
            order = shard(n_train, epoch, cfg.seed, self.rank, self.world)
            bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"{phase} {epoch + 1}/{epochs}",
                       disable=not self.main, leave=False)
            total, seen = 0.0, 0
            for step, i in enumerate(bar):
                idx = order[i:i + cfg.batch_size]
                if len(idx) < 2:  # BatchNorm cannot train on a single sample
                    continue
                loss = step_fn(idx, epoch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                if average is not None:
                    average.update()
                total += loss.item() * len(idx)
                seen += len(idx)
                done = epoch * steps_per_epoch + step
                self._log_step(phase, epoch, step, loss.item(), opt, bar, seen * self.world, t0,
                               epochs * steps_per_epoch, done)
            seconds = time.time() - t0
            with average.applied() if average is not None else contextlib.nullcontext():
                score, detail = eval_fn()
                score = broadcast_float(score)
                improved = score > best + 1e-4
                if improved:
                    best, bad = score, 0
                    best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
                else:
                    bad += 1
            if self.main:
                sps = seen * self.world / seconds
                self.timings.setdefault(f"{phase}_samples_per_s", [])
                self.timings[f"{phase}_samples_per_s"].append(sps)
                print(f"{phase} epoch {epoch + 1}/{epochs}: loss {total / max(seen, 1):.4f}, val {score:.4f}"
                      f"{' *' if improved else ''}, {seconds:.0f}s ({sps:.0f} samples/s)", flush=True)
                if self.log:
                    self.log.epoch(phase=phase, epoch=epoch, val_auc=detail, val_macro_auc=score,
                                   train_loss=total / max(seen, 1), seconds=seconds, samples_per_s=sps)
            self._save_state(phase, epoch, self.done_phases,
                             {"opt": opt.state_dict(), "sched": sched.state_dict(), "best": best, "bad": bad,
                              "best_state": best_state,
                              "average": average.state_dict() if average is not None else None})
            if bad >= patience:
                if self.main:
                    print(f"{phase}: early stop after epoch {epoch + 1} (best val {best:.4f})")
                break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self.best[phase] = best
        self.done_phases.append(phase)
        self._save_state(f"{phase}:done", -1, self.done_phases, {})

    def phase_image(self) -> None:
        cfg = self.cfg
        model = self.model
        net = self._wrap(ImagePhaseNet(model))
        train = self.samples["train"]
        params = [p for n, p in model.named_parameters()
                  if n.startswith(("image_encoder.", "image_proj.", "image_head.", "aux_head."))]
        for p in model.text_encoder.parameters():  # not used in this phase
            p.requires_grad_(False)
        model.image_encoder.train()
        steps = cfg.image_epochs * math.ceil(len(train) / self.world / cfg.batch_size)

        def make_opt():
            opt = torch.optim.AdamW([{"params": params, "lr": cfg.lr_image, "name": "image"}],
                                    weight_decay=cfg.weight_decay)
            return opt, self._cosine(opt, steps, warmup=max(1, steps // 20))

        def step_fn(idx, epoch):
            net.train()
            rows = [train.image_rows[i] for i in idx]
            reps = [train.report_idx[i] for i in idx]
            # seeded per step, so a resumed run draws the same augmentations as an uninterrupted one
            gen = torch.Generator().manual_seed(cfg.seed * 7919 + epoch * 131 + idx[0])
            x = augment(self.pixels(rows), gen).to(self.device)
            if self.cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                logits, aux = net(x)
            loss = self._bce(logits, self.targets[reps].to(self.device))
            if aux is not None:
                loss = loss + cfg.aux_weight * F.binary_cross_entropy_with_logits(
                    aux.float(), self.aux[reps].to(self.device))
            return loss

        def eval_fn():
            score, aucs = self.eval_image("val")
            return score, dict(zip(FINDINGS, aucs))

        average = (WeightAverage(model, ("image_encoder.", "image_proj.", "image_head.", "aux_head."), cfg.ema_decay)
                   if cfg.ema_decay > 0 else None)
        # a from-scratch network on ~2,000 images keeps improving as the cosine rate decays, after
        # noisy plateaus of many epochs: stopping early there wastes the schedule; the best
        # validated state is still the one kept
        self.run_phase("image", cfg.image_epochs, step_fn, make_opt, eval_fn, len(train), average,
                       patience=cfg.image_patience or cfg.image_epochs)

    def _heads_step(self, net, idx, epoch, train_text: bool, train_image: bool):
        cfg = self.cfg
        train = self.samples["train"]
        g = torch.Generator().manual_seed(cfg.seed * 7919 + epoch * 131 + idx[0])
        rows = [train.image_rows[i] for i in idx]
        reps = [train.report_idx[i] for i in idx]
        modes = torch.randint(0, len(TEXT_MODES), (len(idx),), generator=g)
        drop = (torch.rand(len(idx), generator=g) < cfg.modality_dropout).float()
        if train_image:
            img = augment(self.pixels(rows), g).to(self.device)
        else:
            img = self.img_cache[rows].to(self.device)
        if train_text:
            texts = [self.texts[TEXT_MODES[m]][r] if m != NONE_MODE else "" for m, r in zip(modes.tolist(), reps)]
            enc = self.tokenizer(texts, padding=True, truncation=True, max_length=cfg.text_max_len,
                                 return_tensors="pt")
            txt = (enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device))
        else:
            txt = torch.stack([self.txt_cache[TEXT_MODES[m]][r] for m, r in zip(modes.tolist(), reps)]).to(self.device)
        with self._autocast():
            out = net(img, txt, modes.to(self.device), drop.to(self.device))
        y = self.targets[reps].to(self.device)
        has_text = (modes != NONE_MODE).float().to(self.device)
        return self._bce(out["fusion"], y) + self._bce(out["image"], y) + self._bce(out["text"], y, has_text)

    def _fix_image_path(self, image_encoder_trains: bool = False) -> None:
        """After the image phase, the image projection and head stay as validation chose
        them there: they were trained with augmentation and auxiliary targets, whereas the
        later phases see one fixed feature vector per image and would only drift (on the
        previous shipped run, image-only validation AUC fell 0.816 -> 0.810 while the fused
        score rose). The fusion head still trains on the fixed projection."""
        fixed = "image" in self.done_phases and not image_encoder_trains
        for p in [*self.model.image_proj.parameters(), *self.model.image_head.parameters()]:
            p.requires_grad_(not fixed)

    def phase_frozen(self) -> None:
        cfg = self.cfg
        model = self.model
        for p in model.image_encoder.parameters():
            p.requires_grad_(False)
        for p in model.text_encoder.parameters():
            p.requires_grad_(False)
        self._fix_image_path()
        self.cache_features()
        net = self._wrap(HeadsNet(model))
        params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("aux_head.")]
        steps = cfg.frozen_epochs * math.ceil(len(self.samples["train"]) / self.world / cfg.batch_size)

        def make_opt():
            opt = torch.optim.AdamW([{"params": params, "lr": cfg.lr_head, "name": "heads"}],
                                    weight_decay=cfg.weight_decay)
            return opt, self._cosine(opt, steps, warmup=max(1, steps // 50))

        def step_fn(idx, epoch):
            net.train()
            return self._heads_step(net, idx, epoch, False, False)

        self.run_phase("frozen", cfg.frozen_epochs, step_fn, make_opt, lambda: self.eval_heads("val"),
                       len(self.samples["train"]))

    def phase_unfrozen(self) -> None:
        cfg = self.cfg
        model = self.model
        parts = cfg.unfreeze_parts()
        for p in model.text_encoder.encoder.encoder.parameters():
            p.requires_grad_("text" in parts)
        for p in model.image_encoder.parameters():
            p.requires_grad_("image" in parts)
        self._fix_image_path(image_encoder_trains="image" in parts)
        if not hasattr(self, "img_cache"):
            self.cache_features()
        net = self._wrap(HeadsNet(model, train_text="text" in parts, train_image="image" in parts))
        heads = [p for n, p in model.named_parameters()
                 if p.requires_grad and not n.startswith(("image_encoder.", "text_encoder.", "aux_head."))]
        groups = [{"params": heads, "lr": cfg.lr_head * 0.3, "name": "heads"}]
        if "text" in parts:
            groups.append({"params": [p for p in model.text_encoder.parameters() if p.requires_grad],
                           "lr": cfg.lr_text, "name": "text_encoder"})
        if "image" in parts:
            groups.append({"params": list(model.image_encoder.parameters()), "lr": cfg.lr_image_finetune,
                           "name": "image_encoder"})
        steps = cfg.unfrozen_epochs * math.ceil(len(self.samples["train"]) / self.world / cfg.batch_size)

        def make_opt():
            opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
            return opt, self._cosine(opt, steps, warmup=max(1, steps // 10))

        def step_fn(idx, epoch):
            net.train()
            model.image_encoder.train("image" in parts)
            return self._heads_step(net, idx, epoch, "text" in parts, "image" in parts)

        def eval_fn():
            if "image" in parts:
                self.cache_features()
            else:
                self.refresh_text_cache()
            return self.eval_heads("val")

        self.run_phase("unfrozen", cfg.unfrozen_epochs, step_fn, make_opt, eval_fn, len(self.samples["train"]))
        for p in model.parameters():
            p.requires_grad_(False)

    # ------------------------------------------------------------ calibration
    def fit_late_fusion(self, logits: dict, Y: np.ndarray, mi: int, mode: str) -> None:
        """Per finding, the convex combination of fusion/image/text logits (step 0.1) with
        the lowest validation log loss after temperature scaling. Text gets no weight in
        mode ``none``. Few parameters (two per finding), so validation can afford them."""
        grid = [(a / 10, b / 10, (10 - a - b) / 10) for a in range(11) for b in range(11 - a)]
        if mode == "none":
            grid = [g for g in grid if g[2] == 0]
        stacked = np.stack([logits["fusion"], logits["image"], logits["text"]], -1)
        for k in range(len(FINDINGS)):
            def loss(w):
                z = stacked[:, k] @ np.array(w)
                z = z / fit_temperature(Y[:, k], z)
                return float(np.mean(np.logaddexp(0, z) - Y[:, k] * z))
            best = min(grid, key=loss)
            self.model.late_weights[mi, k] = torch.tensor(best)

    def calibrate(self) -> dict:
        """Late-fusion weights, temperatures per head/mode/finding and thresholds (Youden's J
        shrunk toward the training prevalence, core.operating), all on validation."""
        s = self.samples["val"]
        feats = self.img_cache[s.image_rows]
        rows = sorted(set(s.report_idx))
        Y = self.labels[rows].numpy()
        prevalence = self.labels[sorted(set(self.samples["train"].report_idx))].numpy().mean(axis=0)
        thresholds = {}
        temp = torch.ones_like(self.model.temperature)
        self.model.late_weights.zero_()
        self.model.late_weights[..., 0] = 1.0  # start from the fusion head alone
        for mi, mode in enumerate(TEXT_MODES):
            logits = report_logits(self.model, feats, self.txt_cache[mode], s.report_idx, len(self.reports), mode)
            self.fit_late_fusion({h: v[rows] for h, v in logits.items()}, Y, mi, mode)
            logits = report_logits(self.model, feats, self.txt_cache[mode], s.report_idx, len(self.reports), mode)
            thresholds[mode] = {}
            for hi, head in enumerate(("fusion", "image", "text")):
                if head == "text" and mode == "none":
                    thresholds[mode][head] = {f: 0.5 for f in FINDINGS}
                    continue
                L = logits[head][rows]
                for k in range(len(FINDINGS)):
                    temp[hi, mi, k] = fit_temperature(Y[:, k], L[:, k])
                P = 1 / (1 + np.exp(-L / temp[hi, mi].numpy()))
                thresholds[mode][head] = {f: operating_threshold(Y[:, k], P[:, k], prevalence[k])
                                          for k, f in enumerate(FINDINGS)}
        self.model.temperature.copy_(temp)
        return thresholds

    # -------------------------------------------------------------------- run
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
