"""A stand-in for torchxrayvision's DenseNet (same module path, class names and state-dict
keys as mlmed/torchxrayvision ``models.py``), to write checkpoint files in its published
format — a pickled whole model, ``torch.save(model)`` — with random tensors. The tests never
download the real weights."""
from __future__ import annotations

import sys
import types
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn


class _DenseLayer(nn.Sequential):
    def __init__(self, num_input_features, growth_rate, bn_size):
        super().__init__()
        self.add_module("norm1", nn.BatchNorm2d(num_input_features))
        self.add_module("relu1", nn.ReLU(inplace=True))
        self.add_module("conv1", nn.Conv2d(num_input_features, bn_size * growth_rate, 1, bias=False))
        self.add_module("norm2", nn.BatchNorm2d(bn_size * growth_rate))
        self.add_module("relu2", nn.ReLU(inplace=True))
        self.add_module("conv2", nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False))
        self.drop_rate = 0

    def forward(self, x):
        return torch.cat([x, super().forward(x)], 1)


class _DenseBlock(nn.Sequential):
    def __init__(self, num_layers, num_input_features, bn_size, growth_rate):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}",
                            _DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size))


class _Transition(nn.Sequential):
    def __init__(self, num_input_features, num_output_features):
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(num_input_features))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(num_input_features, num_output_features, 1, bias=False))
        self.add_module("pool", nn.AvgPool2d(kernel_size=2, stride=2))


class DenseNet(nn.Module):
    def __init__(self, growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64, bn_size=4,
                 num_classes=18, in_channels=1):
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv2d(in_channels, num_init_features, kernel_size=7, stride=2, padding=3, bias=False)),
            ("norm0", nn.BatchNorm2d(num_init_features)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
        ]))
        n = num_init_features
        for i, layers in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}", _DenseBlock(layers, n, bn_size, growth_rate))
            n += layers * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", _Transition(n, n // 2))
                n //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(n))
        self.classifier = nn.Linear(n, num_classes)
        self.register_buffer("op_threshs", torch.rand(num_classes))


def write_checkpoint(path: Path, *, seed: int = 0, legacy: bool = False) -> DenseNet:
    """Write a random-weight DenseNet-121 pickled as ``torchxrayvision.models.DenseNet``."""
    saved = {k: sys.modules.get(k) for k in ("torchxrayvision", "torchxrayvision.models")}
    pkg = types.ModuleType("torchxrayvision")
    mod = types.ModuleType("torchxrayvision.models")
    for cls in (_DenseLayer, _DenseBlock, _Transition, DenseNet):
        cls.__module__ = "torchxrayvision.models"
        setattr(mod, cls.__name__, cls)
    pkg.models = mod
    sys.modules.update({"torchxrayvision": pkg, "torchxrayvision.models": mod})
    try:
        torch.manual_seed(seed)
        model = DenseNet()
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):  # non-trivial running statistics
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
        model.eval()
        torch.save(model, path, _use_new_zipfile_serialization=not legacy)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return model
