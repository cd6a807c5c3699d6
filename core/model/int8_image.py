"""int8 image encoder for the predict path (oneDNN, static quantisation).

The image encoder is the larger half of a prediction's time (DenseNet-121 at 128 px:
12.5 ms of a 25 ms study here). Its convolutions run in int8 through oneDNN (VNNI on
AVX-512, AMX where the CPU has it): ~6.5 ms. Static, not dynamic, quantisation: the
activation scales are fixed by a calibration on training images, so a study's result
never depends on the other studies in its batch (what sank dynamic int8 for the text
encoder, see core.model.frozen).

- The stem convolution stays fp32: its 1-channel input is the least quantisable tensor
  (on the validation split, int8 stem: worst AUC change 0.0049 and 0.6% of decisions
  flipped; fp32 stem: 0.0013 and 0.5%, for 0.3 ms).
- The calibration (each activation's scale and zero point, a 75 kB file) is computed once, by
  ``scripts/calibrate_int8.py`` on training-split images, and stored next to the weights in
  ``image_int8.safetensors`` with a digest of the image encoder it was made for; a file
  made for other weights, or one that does not load, is ignored (the fp32 graph serves).
- Attribution keeps the fp32 eager encoder (it needs gradients): a heatmap explains the
  fp32 model, whose probabilities differ from the served ones by at most the amounts the
  calibration file records (measured on the validation split, shown on the model card).
"""
from __future__ import annotations

import copy
import hashlib
import json
import warnings
from enum import Enum
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.ao.quantization.observer import ObserverBase
from torchvision.models.densenet import _DenseBlock

from core.model.description import INT8_FILE

ENGINE = "onednn"
_FP32_MODULES = ("features.conv0",)  # the stem (see above)
_OBSERVER = "activation_post_process"


class TraceableImageEncoder(nn.Module):
    """``ImageEncoder.forward_features`` written so torch.fx can trace it: torchvision's dense
    layer branches on ``isinstance(input, Tensor)``, which a traced proxy fails. Same
    modules, same arithmetic (outputs equal to the bit)."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.expand(-1, 3, -1, -1)  # grayscale: the stem expects 3 channels (as ImageEncoder)
        for module in self.features.children():
            if isinstance(module, _DenseBlock):
                maps = [x]
                for layer in module.values():
                    h = layer.conv1(layer.relu1(layer.norm1(torch.cat(maps, 1))))
                    maps.append(layer.conv2(layer.relu2(layer.norm2(h))))
                x = torch.cat(maps, 1)
            else:
                x = module(x)
        return torch.flatten(F.adaptive_avg_pool2d(F.relu(x), 1), 1)


class Int8ImageEncoder(nn.Module):
    """The converted graph behind the image encoder's interface (``forward_features``)."""

    out_dim = 1024

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.graph = graph

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x)

    forward = forward_features


def available() -> bool:
    return ENGINE in torch.backends.quantized.supported_engines


def stored_encoder_digest(weights_dir: Path) -> str:
    """SHA-256 of the image encoder's tensors as stored in the weights file: what a calibration
    was made for. Taken from the file, not from the served encoder: BatchNorm folding
    (core.model.frozen) rounds differently on CPUs with other vector units, so a digest of the
    folded encoder made on one machine did not match on another, and int8 silently never served."""
    from safetensors import safe_open

    from core.model.description import WEIGHTS_FILE
    h = hashlib.sha256()
    with safe_open(str(Path(weights_dir) / WEIGHTS_FILE), framework="pt") as fh:
        for name in sorted(k for k in fh.keys() if k.startswith("image_encoder.")):
            t = fh.get_tensor(name).contiguous()
            h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def encoder_digest(image_encoder: nn.Module) -> str:
    """SHA-256 of an in-memory encoder's tensors (for encoders that are not in a weights file;
    a served model's calibration is tied to ``stored_encoder_digest``)."""
    h = hashlib.sha256()
    for name, t in sorted(image_encoder.state_dict().items()):
        t = t.detach().contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


class _StoredQParams(ObserverBase):
    """An activation 'observer' that returns stored qparams: a calibration is loaded into
    these, so converting needs no statistics (HistogramObserver's search took ~0.8 s)."""

    def __init__(self, dtype=torch.quint8, **kwargs) -> None:
        super().__init__(dtype=dtype)
        self.qscheme = torch.per_tensor_affine
        self.register_buffer("scale", torch.tensor([1.0]))
        self.register_buffer("zero_point", torch.tensor([0], dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def calculate_qparams(self):
        return self.scale, self.zero_point


def _observed(image_encoder: nn.Module, size: int, *, stored: bool):
    """A copy of the encoder with activation observers (torch.ao FX, oneDNN configuration):
    histogram observers to calibrate, or ``stored`` qparams to load a calibration into."""
    from torch.ao.quantization import QConfig, get_default_qconfig, get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx
    torch.backends.quantized.engine = ENGINE  # process-wide; only quantised modules read it
    qconfig = get_default_qconfig(ENGINE)
    if stored:
        qconfig = QConfig(activation=_StoredQParams.with_args(dtype=torch.quint8), weight=qconfig.weight)
    qmap = get_default_qconfig_mapping(ENGINE).set_global(qconfig)
    for name in _FP32_MODULES:
        qmap = qmap.set_module_name(name, None)
    model = TraceableImageEncoder(copy.deepcopy(image_encoder.features)).eval()
    with warnings.catch_warnings():  # torch.ao announces its deprecation on every call
        warnings.simplefilter("ignore")
        return prepare_fx(model, qmap, (torch.zeros(1, 1, size, size),))


def _observers(observed: nn.Module) -> dict[str, nn.Module]:
    # every name, shared ones too (torch.cat's inputs share one observer; named_children dedups)
    return {name: m for name, m in observed._modules.items() if name.startswith(_OBSERVER)}


def calibrate(image_encoder: nn.Module, pixels: torch.Tensor, *, batch_size: int = 32) -> dict[str, torch.Tensor]:
    """Run normalised images (N x 1 x S x S) through the encoder with histogram observers;
    returns each activation's (scale, zero point): what ``int8_encoder`` needs."""
    observed = _observed(image_encoder, pixels.shape[-1], stored=False)
    with torch.inference_mode():
        for s in range(0, len(pixels), batch_size):
            observed(pixels[s:s + batch_size].contiguous())
    state = {}
    for name, obs in _observers(observed).items():
        scale, zero_point = obs.calculate_qparams()
        state[f"{name}.scale"] = scale.reshape(1).float().clone()
        state[f"{name}.zero_point"] = zero_point.reshape(1).to(torch.int64).clone()
    return state


def int8_encoder(image_encoder: nn.Module, state: dict[str, torch.Tensor], size: int) -> Int8ImageEncoder:
    """The int8 encoder (N x 1 x S x S -> N x 1024) from a calibration. Raises ValueError
    when the calibration does not fit this encoder."""
    from torch.ao.quantization.quantize_fx import convert_fx
    observed = _observed(image_encoder, size, stored=True)
    expected = {k for k in observed.state_dict() if k.startswith(_OBSERVER)}
    if set(state) != expected:
        raise ValueError(f"calibration has {len(set(state) - expected)} unknown and "
                         f"{len(expected - set(state))} missing observer tensors")
    observed.load_state_dict(state, strict=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Int8ImageEncoder(convert_fx(observed)).eval()


def save_calibration(path: Path, state: dict[str, torch.Tensor], info: dict) -> None:
    """``info`` (JSON): at least ``encoder_sha256``; also what it was calibrated on and the
    fidelity measured. Written atomically (core.model.checkpoint)."""
    from safetensors.torch import save_file

    from core.model.checkpoint import _atomic_write
    tensors = {k: v.contiguous() for k, v in state.items()}
    _atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata={"int8": json.dumps(info, sort_keys=True)}))


def read_calibration(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(observer state, info). Raises ValueError for a file that is not a calibration."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as fh:
            info = json.loads((fh.metadata() or {})["int8"])
            state = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # noqa: BLE001 — damaged, truncated or foreign file
        raise ValueError(f"{Path(path).name} is not a readable int8 calibration ({type(exc).__name__})") from None
    return state, info


class Unused(Enum):
    """Why a weights folder's calibration is not used (the fp32 graph serves instead); the
    predictor turns these into its int8 state (core.serving.precision.Int8State)."""
    NO_FILE = "no file"                 # none next to the weights
    UNREADABLE = "unreadable"           # damaged, truncated or not a calibration
    NO_ENGINE = "no engine"             # this torch build cannot run it
    OTHER_WEIGHTS = "other weights"     # made for another image encoder
    DOES_NOT_FIT = "does not fit"       # its activations are not this encoder's


def find_calibration(weights_dir: Path) -> tuple[tuple[dict, dict] | None, Unused | None]:
    """((observer state, info), None) for the folder's calibration file, or (None, why not)."""
    path = Path(weights_dir) / INT8_FILE
    if not path.is_file():
        return None, Unused.NO_FILE
    try:
        return read_calibration(path), None
    except ValueError:
        return None, Unused.UNREADABLE


def served_encoder(image_encoder: nn.Module, calibration: tuple[dict, dict], size: int, *,
                   digest: str | None = None) -> tuple[Int8ImageEncoder | None, Unused | None]:
    """(int8 encoder, None) when the calibration was made for this encoder (``digest``: its
    stored_encoder_digest; by default that of the encoder in memory), else (None, why not): the
    caller then serves fp32. Takes ~1.4 s (torch.fx prepare + convert)."""
    state, info = calibration
    if not available():
        return None, Unused.NO_ENGINE
    if info.get("encoder_sha256") != (digest or encoder_digest(image_encoder)):
        return None, Unused.OTHER_WEIGHTS
    try:
        return int8_encoder(image_encoder, state, size), None
    except (ValueError, RuntimeError):
        return None, Unused.DOES_NOT_FIT
