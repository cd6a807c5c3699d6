"""The three phases (image, frozen, unfrozen): which parameters train, at which rates,
on what inputs. Each hands ``run_phase`` a step, an optimiser and a validation score."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from core.data.image_bank import augment
from core.data.labels import FINDINGS, TEXT_MODES
from core.training.config import NONE_MODE
from core.training.ema import WeightAverage
from core.training.nets import HeadsNet, ImagePhaseNet


class Phases:
    """The phases of ``Trainer``; their order is ``Trainer.fit``'s."""

    def phase_image(self) -> None:
        cfg = self.cfg
        model = self.model
        net = self._wrap(ImagePhaseNet(model))
        train = self.samples.get("train_views", self.samples["train"])  # with laterals when asked
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
            return score, dict(zip(FINDINGS, aucs, strict=True))

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
            texts = [self.texts[TEXT_MODES[m]][r] if m != NONE_MODE else ""
                     for m, r in zip(modes.tolist(), reps, strict=True)]
            enc = self.tokenizer(texts, padding=True, truncation=True, max_length=cfg.text_max_len,
                                 return_tensors="pt")
            txt = (enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device))
        else:
            txt = torch.stack([self.txt_cache[TEXT_MODES[m]][r]
                               for m, r in zip(modes.tolist(), reps, strict=True)]).to(self.device)
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
        for p in model.text_encoder.tuned_parameters():  # the family says which (core.model.text_encoders)
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
