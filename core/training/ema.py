"""Exponential moving average of part of a model's weights (parameters and BatchNorm buffers).

A network trained from scratch on ~2,000 images is noisy from step to step; validating and
keeping the averaged weights gives a steadier model and a steadier early-stopping signal.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from core.errors import RunStateError


class WeightAverage:
    def __init__(self, model: nn.Module, prefixes: tuple[str, ...], decay: float) -> None:
        self.model, self.decay, self.updates = model, decay, 0
        # state_dict tensors share storage with the live parameters and buffers, which the
        # optimiser and BatchNorm update in place: keep the references once
        self.live = {n: t for n, t in model.state_dict().items() if n.startswith(prefixes)}
        if not self.live:
            raise ValueError(f"no weights start with {prefixes}")
        self.shadow = {n: t.detach().clone() for n, t in self.live.items()}
        self._floats = [n for n, t in self.live.items() if t.is_floating_point()]

    def current_decay(self) -> float:
        # warm-up (as in TensorFlow's ExponentialMovingAverage): early weights are poor, forget them fast
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        weight = 1.0 - self.current_decay()
        torch._foreach_lerp_([self.shadow[n] for n in self._floats], [self.live[n] for n in self._floats], weight)
        for n, t in self.live.items():
            if not t.is_floating_point():  # e.g. BatchNorm's num_batches_tracked
                self.shadow[n].copy_(t)

    @contextmanager
    def applied(self):
        """The averaged weights in the model inside the block; the live ones restored after."""
        with torch.no_grad():
            backup = {n: t.detach().clone() for n, t in self.live.items()}
            for n, t in self.live.items():
                t.copy_(self.shadow[n])
        try:
            yield
        finally:
            with torch.no_grad():
                for n, t in self.live.items():
                    t.copy_(backup[n])

    def state_dict(self) -> dict:
        return {"updates": self.updates, "shadow": {n: t.cpu() for n, t in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        if set(state["shadow"]) != set(self.shadow):
            raise RunStateError("the weight-average state does not match this model; start a new --run-dir")
        self.updates = int(state["updates"])
        for n, t in state["shadow"].items():
            self.shadow[n].copy_(t)
