"""torchxrayvision DenseNet-121 checkpoints as image-encoder weights (``--image-weights FILE``).

torchxrayvision (mlmed/torchxrayvision, ``models.py``) publishes its ``densenet121-res224-*``
weights as files named ``<datasets>-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt``,
e.g. ``nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-...`` for ``all``. Each is a
*pickled whole model* (``torch.save(model)``; torchxrayvision loads it with ``torch.load(f)``
then ``savedmodel.state_dict()``), the older ones in the pre-1.6 (non-zip) format. Keys:
``features.conv0.weight`` (64 x **1** x 7 x 7: one grey channel), ``features.norm0.*``,
``features.denseblockN.denselayerM.{norm1,conv1,norm2,conv2}.*``,
``features.transitionN.{norm,conv}.*``, ``features.norm5.*``, ``classifier.{weight,bias}``
(18 x 1024) and sometimes an ``op_threshs`` buffer. Inputs are scaled to [-1024, 1024].

We never run torchxrayvision's code: a pickled model is read by an unpickler that builds
inert stand-ins for every class it names (only torch's tensor-rebuild functions and
OrderedDict are real), and the tensors are collected from their ``_parameters`` and
``_buffers``. A plain state dict (``torch.save(model.state_dict())``) or a safetensors
file of the same keys loads directly. The one-channel stem becomes a three-channel stem
by repeating the kernel / 3, which computes exactly the same output on a grey image
expanded to three channels (what core.model.fusion.ImageEncoder feeds it).
"""
from __future__ import annotations

import pickle
import re
import types
from collections import OrderedDict
from pathlib import Path

import torch
import torch._utils

# torchxrayvision's dataset tags (file-name prefixes) -> the collection the images come from
XRV_DATASETS = {"nih": "nih", "pc": "padchest", "chex": "chexpert", "mimic_ch": "mimic-cxr", "mimic_nb": "mimic-cxr",
                "google": "nih", "openi": "openi", "kaggle": "nih", "rsna": "nih", "siim": "siim", "vin": "vindr-cxr"}
# torchxrayvision's input scaling: (2 * p / 255 - 1) * 1024 == (p / 255 - 0.5) / (1 / 2048)
XRV_MEAN, XRV_STD = 0.5, 1.0 / 2048.0
_NAME = re.compile(r"^(?P<tags>[a-z_]+(?:-[a-z_]+)*)-densenet121")

_REAL = {("collections", "OrderedDict"): OrderedDict, ("torch._utils", "_rebuild_tensor_v2"): None,
         ("torch._utils", "_rebuild_parameter"): None, ("torch._utils", "_rebuild_parameter_with_state"): None,
         ("torch", "Size"): torch.Size}


class _Inert:
    """Stand-in for any class a pickled model names: takes its state, runs nothing."""

    def __init__(self, *args, **kwargs):
        self._args = args

    def __setstate__(self, state):
        if isinstance(state, tuple):  # (dict, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)


class _InertUnpickler(pickle.Unpickler):
    _classes: dict = {}

    def find_class(self, module, name):
        if (module, name) in _REAL:
            real = _REAL[(module, name)]
            return real if real is not None else getattr(torch._utils, name)
        key = f"{module}.{name}"
        if key not in self._classes:
            self._classes[key] = type(name, (_Inert,), {"__module__": module})
        return self._classes[key]


_inert_pickle = types.SimpleNamespace(Unpickler=_InertUnpickler, __name__="cxr_inert_pickle",
                                      load=lambda f, **kw: _InertUnpickler(f, **kw).load())


def _collect(obj, prefix: str, out: dict) -> None:
    for kind in ("_parameters", "_buffers"):
        for name, t in (getattr(obj, kind, None) or {}).items():
            if isinstance(t, torch.Tensor):
                out[prefix + name] = t.detach()
    for name, child in (getattr(obj, "_modules", None) or {}).items():
        if child is not None:
            _collect(child, f"{prefix}{name}.", out)


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a torchxrayvision checkpoint (pickled model or state dict) or a safetensors file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # a pickled module: read it with inert classes
        state = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_inert_pickle)
    if isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values()):
        return dict(state)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        return dict(state["state_dict"])
    out: dict[str, torch.Tensor] = {}
    _collect(state, "", out)
    return out


def is_xrv_state(state: dict) -> bool:
    w = state.get("features.conv0.weight")
    return w is not None and w.ndim == 4 and w.shape[1] == 1


def to_encoder_state(state: dict) -> dict[str, torch.Tensor]:
    """Keys of ``ImageEncoder.features`` (classifier and op_threshs dropped; 1-channel stem widened)."""
    out = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    stem = out.get("conv0.weight")
    if stem is not None and stem.shape[1] == 1:
        out["conv0.weight"] = stem.repeat(1, 3, 1, 1) / 3
    return out


def datasets_from_name(path: Path) -> list[str]:
    """Collections named by a torchxrayvision file name (``nih-pc-chex-...-densenet121-...``);
    [] when the name does not follow that pattern."""
    m = _NAME.match(Path(path).name)
    if not m:
        return []
    tags = m.group("tags").split("-")
    return sorted({XRV_DATASETS.get(t, t) for t in tags})
