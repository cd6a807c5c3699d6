"""Fixtures every reliability module uses."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread for the model. On the 2-core machine these tests were written on, with a
    training job holding the cores, torch's default of 2 threads made each prediction ~4 s instead
    of ~0.03 s (threads waiting on each other); docs/reliability.md has the numbers."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fast_load(monkeypatch):
    """predict.py's ``Predictor.load`` served from the session cache (the load path itself is
    exercised by the subprocess cases and the weights tests)."""
    from core.model.checkpoint import WeightsError
    from core.serving.predictor import Predictor
    from tests.reliability.test_reliability_inputs import cached_predictor

    def load(cls, weights_dir="weights"):
        if not (Path(weights_dir) / "model.safetensors").is_file():
            raise WeightsError(f"no trained weights at {weights_dir}")
        return cached_predictor(weights_dir)

    monkeypatch.setattr(Predictor, "load", classmethod(load))
