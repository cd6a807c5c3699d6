"""The three phases (image, frozen, unfrozen): which parameters train, at which rates, on what
inputs. Each function readies the model for its phase and returns the ``Phase`` (a step, an
optimiser and a validation score) that ``EpochLoop.run`` trains."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from core.data.image_bank import augment
from core.data.labels import FINDINGS, TEXT_MODES
from core.training.config import NONE_MODE, TrainConfig
from core.training.distributed import Process
from core.training.ema import WeightAverage
from core.training.loops import Phase, autocast, bce, cosine, wrap
from core.training.nets import HeadsNet, ImagePhaseNet
from core.training.setup import RunData
from core.training.validation import FeatureCache, eval_heads, eval_image

IMAGE_PATH = ("image_encoder.", "image_proj.", "image_head.", "aux_head.")


def _steps(cfg: TrainConfig, epochs: int, n_train: int, world: int) -> int:
    return epochs * math.ceil(n_train / world / cfg.batch_size)


def _adamw(groups: list[dict], cfg: TrainConfig, steps: int, *, warmup_share: int):
    """(AdamW over the parameter groups, its cosine schedule warming up over 1/``warmup_share`` of the steps)."""
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    return opt, cosine(opt, steps, warmup=max(1, steps // warmup_share))


def image_phase(cfg: TrainConfig, model, data: RunData, process: Process) -> Phase:
    net = wrap(ImagePhaseNet(model), process.world)
    train = data.samples.get("train_views", data.samples["train"])  # with laterals when asked
    params = [p for n, p in model.named_parameters() if n.startswith(IMAGE_PATH)]
    for p in model.text_encoder.parameters():  # not used in this phase
        p.requires_grad_(False)
    model.image_encoder.train()
    steps = _steps(cfg, cfg.image_epochs, len(train), process.world)

    def make_opt():
        return _adamw([{"params": params, "lr": cfg.lr_image, "name": "image"}], cfg, steps, warmup_share=20)

    def step(idx, epoch):
        net.train()
        rows = [train.image_rows[i] for i in idx]
        reps = [train.report_idx[i] for i in idx]
        # seeded per step, so a resumed run draws the same augmentations as an uninterrupted one
        gen = torch.Generator().manual_seed(cfg.seed * 7919 + epoch * 131 + idx[0])
        x = augment(data.pixels(rows), gen).to(process.device)
        if process.cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(process.cuda):
            logits, aux = net(x)
        loss = bce(logits, data.targets[reps].to(process.device), data.pos_weight)
        if aux is not None:
            loss = loss + cfg.aux_weight * F.binary_cross_entropy_with_logits(
                aux.float(), data.aux[reps].to(process.device))
        return loss

    def evaluate():
        score, aucs = eval_image(model, data, process.device, "val")
        return score, dict(zip(FINDINGS, aucs, strict=True))

    average = WeightAverage(model, IMAGE_PATH, cfg.ema_decay) if cfg.ema_decay > 0 else None
    # a from-scratch network on ~2,000 images keeps improving as the cosine rate decays, after
    # noisy plateaus of many epochs: stopping early there wastes the schedule; the best
    # validated state is still the one kept
    return Phase("image", cfg.image_epochs, len(train), make_opt, step, evaluate, average,
                 patience=cfg.image_patience or cfg.image_epochs)


class HeadsStep:
    """One training batch of the frozen and unfrozen phases: a text mode drawn per sample,
    modality dropout, and encoders run live only where they train (cached features otherwise)."""

    def __init__(self, cfg: TrainConfig, data: RunData, cache: FeatureCache, tokenizer, process: Process) -> None:
        self.cfg, self.data, self.cache, self.tokenizer, self.process = cfg, data, cache, tokenizer, process

    def __call__(self, net, idx, epoch, train_text: bool, train_image: bool):
        cfg, data, device = self.cfg, self.data, self.process.device
        train = data.samples["train"]
        g = torch.Generator().manual_seed(cfg.seed * 7919 + epoch * 131 + idx[0])
        rows = [train.image_rows[i] for i in idx]
        reps = [train.report_idx[i] for i in idx]
        modes = torch.randint(0, len(TEXT_MODES), (len(idx),), generator=g)
        drop = (torch.rand(len(idx), generator=g) < cfg.modality_dropout).float()
        if train_image:
            img = augment(data.pixels(rows), g).to(device)
        else:
            img = self.cache.image[rows].to(device)
        if train_text:
            texts = [data.texts[TEXT_MODES[m]][r] if m != NONE_MODE else ""
                     for m, r in zip(modes.tolist(), reps, strict=True)]
            enc = self.tokenizer(texts, padding=True, truncation=True, max_length=cfg.text_max_len,
                                 return_tensors="pt")
            txt = (enc["input_ids"].to(device), enc["attention_mask"].to(device))
        else:
            txt = torch.stack([self.cache.text[TEXT_MODES[m]][r]
                               for m, r in zip(modes.tolist(), reps, strict=True)]).to(device)
        with autocast(self.process.cuda):
            out = net(img, txt, modes.to(device), drop.to(device))
        y = data.targets[reps].to(device)
        has_text = (modes != NONE_MODE).float().to(device)
        w = data.pos_weight
        return bce(out["fusion"], y, w) + bce(out["image"], y, w) + bce(out["text"], y, w, has_text)


def fix_image_path(model, image_phase_ran: bool, image_encoder_trains: bool = False) -> None:
    """After the image phase, the image projection and head stay as validation chose
    them there: they were trained with augmentation and auxiliary targets, whereas the
    later phases see one fixed feature vector per image and would only drift (on the
    previous shipped run, image-only validation AUC fell 0.816 -> 0.810 while the fused
    score rose). The fusion head still trains on the fixed projection."""
    fixed = image_phase_ran and not image_encoder_trains
    for p in [*model.image_proj.parameters(), *model.image_head.parameters()]:
        p.requires_grad_(not fixed)


def frozen_phase(cfg: TrainConfig, model, data: RunData, process: Process, cache: FeatureCache,
                 heads_step: HeadsStep, image_phase_ran: bool) -> Phase:
    for p in model.image_encoder.parameters():
        p.requires_grad_(False)
    for p in model.text_encoder.parameters():
        p.requires_grad_(False)
    fix_image_path(model, image_phase_ran)
    cache.refresh()
    net = wrap(HeadsNet(model), process.world)
    params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("aux_head.")]
    n_train = len(data.samples["train"])
    steps = _steps(cfg, cfg.frozen_epochs, n_train, process.world)

    def make_opt():
        return _adamw([{"params": params, "lr": cfg.lr_head, "name": "heads"}], cfg, steps, warmup_share=50)

    def step(idx, epoch):
        net.train()
        return heads_step(net, idx, epoch, False, False)

    return Phase("frozen", cfg.frozen_epochs, n_train, make_opt, step, lambda: eval_heads(model, data, cache, "val"))


def unfrozen_phase(cfg: TrainConfig, model, data: RunData, process: Process, cache: FeatureCache,
                   heads_step: HeadsStep, image_phase_ran: bool) -> Phase:
    parts = cfg.unfreeze_parts()
    for p in model.text_encoder.tuned_parameters():  # the family says which (core.model.text_encoders)
        p.requires_grad_("text" in parts)
    for p in model.image_encoder.parameters():
        p.requires_grad_("image" in parts)
    fix_image_path(model, image_phase_ran, image_encoder_trains="image" in parts)
    if cache.image is None:
        cache.refresh()
    net = wrap(HeadsNet(model, train_text="text" in parts, train_image="image" in parts), process.world)
    heads = [p for n, p in model.named_parameters()
             if p.requires_grad and not n.startswith(("image_encoder.", "text_encoder.", "aux_head."))]
    groups = [{"params": heads, "lr": cfg.lr_head * 0.3, "name": "heads"}]
    if "text" in parts:
        groups.append({"params": [p for p in model.text_encoder.parameters() if p.requires_grad],
                       "lr": cfg.lr_text, "name": "text_encoder"})
    if "image" in parts:
        groups.append({"params": list(model.image_encoder.parameters()), "lr": cfg.lr_image_finetune,
                       "name": "image_encoder"})
    n_train = len(data.samples["train"])
    steps = _steps(cfg, cfg.unfrozen_epochs, n_train, process.world)

    def make_opt():
        return _adamw(groups, cfg, steps, warmup_share=10)

    def step(idx, epoch):
        net.train()
        model.image_encoder.train("image" in parts)
        return heads_step(net, idx, epoch, "text" in parts, "image" in parts)

    def evaluate():
        if "image" in parts:
            cache.refresh()
        else:
            cache.refresh_text()
        return eval_heads(model, data, cache, "val")

    def freeze_all():  # nothing trains after this phase
        for p in model.parameters():
            p.requires_grad_(False)

    return Phase("unfrozen", cfg.unfrozen_epochs, n_train, make_opt, step, evaluate, after=freeze_all)
