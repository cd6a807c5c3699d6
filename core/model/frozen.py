"""Inference-only rewrites of a trained model that keep its predictions (checked on the
test split by tests/model/test_fast_path.py: every finding's AUC within 0.005 of fp32 eager).

- ``fold_batchnorm``: in each DenseNet layer the second BatchNorm follows a convolution,
  so it folds into that convolution's weights (exact up to float rounding).
- ``quantize_text``: dynamic int8 quantisation (per output channel) of the text encoder's
  feed-forward layers. **Off by default** (``optimise_for_inference(quantize=False)``): dynamic
  quantisation scales the *activations per batch*, so a study's probabilities depended on the
  other studies in its batch (identical indications scored differently), and on the
  validation split it moved the indication text head's AUC by 0.019 and 6.7% of its
  thresholded decisions (report text head 0.9%; measured after the thresholds were refit).
- channels_last memory layout for the image encoder (oneDNN's fast convolution path on
  CPU; measured about 1.4x on DenseNet-121 at 128 px here).
- ``frozen_features``: each encoder's ``forward_features`` traced and frozen with TorchScript
  for the predict path (DenseNet-121 20.8 -> 16.4 ms, and 11.3 ms with oneDNN Graph fusion;
  MiniLM 7.4 -> 5.2 ms; batch 1, idle, here: the model is overhead-bound on AVX-512, and
  freezing removes Python and dispatch steps). The traced graph is checked against eager on
  inputs of several shapes when it is frozen and dropped when it differs; attribution keeps
  the eager modules (it needs their hooks and gradients).
  Tried and not kept: bf16 weights (avx512_bf16, no AMX): DenseNet 34 ms, slower than fp32.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn as nn


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


def fold_batchnorm(image_encoder: nn.Module) -> int:
    """Fold norm2 into conv1 in every dense layer (eval mode only). Returns the count."""
    n = 0
    for module in image_encoder.modules():
        if hasattr(module, "conv1") and hasattr(module, "norm2") and isinstance(module.norm2, nn.BatchNorm2d):
            module.conv1 = fold_conv_bn(module.conv1, module.norm2)
            module.norm2 = nn.Identity()
            n += 1
    return n


def quantize_text(model: nn.Module) -> None:
    """Dynamic int8 weights for the text encoder's Linear layers (activations stay fp32)."""
    with warnings.catch_warnings():  # torch announces the deprecation of quantised tensors on every call
        warnings.simplefilter("ignore", UserWarning)
        # which layers is the encoder family's call (core.model.text_encoders; BERT: the feed-forward
        # layers only). One scale per output channel, not per tensor: on the validation split of
        # the shipped weights per-tensor scales moved an AUC by 0.014, per-channel by 0.002
        per_channel = torch.ao.quantization.per_channel_dynamic_qconfig
        layers = {name: per_channel for name in model.text_encoder.quantisable_layers()}
        torch.ao.quantization.quantize_dynamic(model.text_encoder, layers, dtype=torch.qint8, inplace=True)


class _FeaturesOf(nn.Module):
    """``forward`` is the wrapped encoder's ``forward_features`` (what ``jit.trace`` records)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, *inputs):
        return self.encoder.forward_features(*inputs)


def frozen_features(encoder: nn.Module, examples: list[tuple], *, atol: float = 1e-5,
                    onednn_fusion: bool = False):
    """``encoder.forward_features`` traced on ``examples[0]`` and frozen, or None when tracing
    fails or the frozen graph differs from eager on any example (a shape the trace baked in,
    a branch it could not follow): the caller then keeps eager. Each example runs three times,
    so the graph the check sees is the optimised one that later calls run (TorchScript profiles
    the first runs of each input shape, then optimises).

    ``onednn_fusion``: compile the examples' shapes with oneDNN Graph fusion (conv + ReLU +
    concat...). DenseNet-121 at batch 1: 16.4 -> 11.3 ms here, same outputs to 6e-7. The
    switch is process-wide and only read when a shape is compiled, so it is on for the
    examples and off again after: other shapes (a batch page's sizes) compile unfused. Not for
    the text encoder: every new text length recompiled and calls spiked to 60-180 ms."""
    wrapper = _FeaturesOf(encoder).eval()
    fusion_was = torch.jit.onednn_fusion_enabled()
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python branches it records
            torch.jit.enable_onednn_fusion(onednn_fusion)
            frozen = torch.jit.freeze(torch.jit.trace(wrapper, examples[0], check_trace=False))
            for example in examples:
                for _ in range(3):
                    got = frozen(*example)
                if not torch.allclose(got, encoder.forward_features(*example), atol=atol, rtol=0):
                    return None
    except Exception:  # noqa: BLE001 — any tracing failure means: stay eager
        return None
    finally:
        torch.jit.enable_onednn_fusion(fusion_was)
    return frozen


def optimise_for_inference(model: nn.Module, *, quantize: bool = False) -> nn.Module:
    model.eval()
    fold_batchnorm(model.image_encoder)
    model.image_encoder.to(memory_format=torch.channels_last)
    if quantize:
        quantize_text(model)
    return model
