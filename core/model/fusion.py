"""Late-fusion model: DenseNet-121 image encoder + a text encoder (core.model.text_encoders;
the shipped one is BERT-family).

Each branch has its own head, and a fusion head combines the two branch embeddings,
so every prediction carries three sets of logits (``fusion``, ``image``, ``text``).
Encoders expose ``forward_features``; the heads run on features alone
(``forward_heads``), which is what lets training cache frozen encoders.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from core.data.labels import FINDINGS, HEADS, TEXT_MODES
from core.errors import BackboneUnavailable, CxrError  # noqa: F401 (re-exported)
from core.model.text_encoders import DEFAULT_FAMILY, TextEncoder
from core.model.text_encoders import family as text_family
from core.model.text_encoders.bert import OFFLINE_TEXT_BACKBONE  # noqa: F401 (the default backbone, re-exported)


@dataclass
class ModelConfig:
    text_backbone: str = OFFLINE_TEXT_BACKBONE
    image_backbone: str = "densenet121"
    num_findings: int = len(FINDINGS)
    num_aux: int = 0          # auxiliary MeSH targets on the image branch
    embed_dim: int = 256
    dropout: float = 0.2
    text_type: str = DEFAULT_FAMILY   # the text-encoder family (core.model.text_encoders)
    text_options: dict = field(default_factory=dict)  # what that family needs to build it again

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


# ---------------------------------------------------------------- image branch
class ImageEncoder(nn.Module):
    """torchvision DenseNet-121 features with our own forward.

    torchvision's ``DenseNet.forward`` applies an in-place ReLU that breaks Captum's
    backward hooks; owning ``features -> relu -> pool`` avoids it."""

    out_dim = 1024

    def __init__(self) -> None:
        super().__init__()
        self.features = torchvision.models.densenet121(weights=None).features

    def forward_maps(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:  # grayscale X-ray: the stem expects 3 channels (ImageNet layout)
            x = x.expand(-1, 3, -1, -1)
        return F.relu(self.features(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(self.forward_maps(x), 1), 1)

    forward = forward_features


def _read_image_weights_file(spec: str) -> dict:
    """The state dict in an image-weights file, or BackboneUnavailable in one line."""
    from core.model.xrv_weights import read_state
    path = Path(spec)
    if not path.is_file():
        raise BackboneUnavailable(f"image weights {spec} not found; use imagenet, none or a file path")
    try:
        return read_state(path)
    except Exception as exc:
        raise BackboneUnavailable(f"image weights {spec} cannot be read ({type(exc).__name__})") from None


def load_image_weights(encoder: ImageEncoder, spec: str) -> None:
    """``imagenet`` (needs the network), ``none`` (from scratch) or a path to a
    safetensors / state-dict file of DenseNet-121 ``features``, or a torchxrayvision
    DenseNet-121 checkpoint (see core.model.xrv_weights)."""
    if spec == "none":
        return
    if spec == "imagenet":
        try:
            weights = torchvision.models.DenseNet121_Weights.IMAGENET1K_V1
            state = weights.get_state_dict(progress=False)
        except Exception as exc:  # URLError, socket errors, hash mismatch...
            raise BackboneUnavailable(
                f"cannot download ImageNet DenseNet-121 weights ({type(exc).__name__}); "
                "offline, train from scratch with --image-weights none") from None
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    else:
        from core.model.xrv_weights import is_xrv_state, to_encoder_state
        state = _read_image_weights_file(spec)
        if is_xrv_state(state):  # torchxrayvision DenseNet-121: one-channel stem, classifier dropped
            state = to_encoder_state(state)
        state = {k.removeprefix("features."): v for k, v in state.items()}
    # torchvision's old checkpoints name layers "norm.1"; the current module uses "norm1"
    import re
    pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
                         r"((?:[12])\.(?:weight|bias|running_mean|running_var))$")
    fixed = {}
    for k, v in state.items():
        m = pattern.match(k)
        fixed[m.group(1) + m.group(2) if m else k] = v
    missing, unexpected = encoder.features.load_state_dict(fixed, strict=False)
    if missing:
        raise BackboneUnavailable(f"image weights {spec} do not fit DenseNet-121 ({len(missing)} tensors missing)")


# ----------------------------------------------------------------- text branch
def resolve_text_backbone(name: str) -> str:
    """The folder or id the bert family loads for ``name`` (kept for callers of core.model.fusion)."""
    from core.model.text_encoders.bert import resolve_text_backbone as resolve
    return resolve(name)


# ------------------------------------------------------------------- the model
class FusionModel(nn.Module):
    def __init__(self, config: ModelConfig, text_encoder: TextEncoder) -> None:
        super().__init__()
        self.config = config
        d, p = config.embed_dim, config.dropout
        self.image_encoder = ImageEncoder()
        self.text_encoder = text_encoder
        self.image_proj = nn.Sequential(nn.Linear(ImageEncoder.out_dim, d), nn.ReLU(), nn.Dropout(p))
        self.text_proj = nn.Sequential(nn.Linear(self.text_encoder.out_dim, d), nn.ReLU(), nn.Dropout(p))
        n = config.num_findings
        self.image_head = nn.Linear(d, n)
        self.text_head = nn.Linear(d, n)
        # the fusion head sees both embeddings and which text mode it is reading
        self.fusion_head = nn.Sequential(nn.Linear(2 * d + len(TEXT_MODES), d), nn.ReLU(), nn.Dropout(p),
                                         nn.Linear(d, n))
        self.aux_head = nn.Linear(ImageEncoder.out_dim, config.num_aux) if config.num_aux else None
        # per head, per text mode, per finding: temperatures fitted on validation
        self.register_buffer("temperature", torch.ones(3, len(TEXT_MODES), n))
        # late fusion, per text mode and finding: the fused logit is a convex combination of
        # the fusion-head, image-head and text-head logits, chosen on validation (identity
        # = the fusion head alone)
        late = torch.zeros(len(TEXT_MODES), n, 3)
        late[..., 0] = 1.0
        self.register_buffer("late_weights", late)

    def forward_heads(self, image_feats: torch.Tensor, text_feats: torch.Tensor, mode: torch.Tensor) -> dict:
        """Logits of every head from encoder features. ``mode`` is the index of the
        text mode (core.data.labels.TEXT_MODES) per sample; mode ``none`` zeroes the text."""
        has_text = (mode != TEXT_MODES.index("none")).to(text_feats.dtype).unsqueeze(1)
        zi = self.image_proj(image_feats)
        zt = self.text_proj(text_feats) * has_text
        onehot = F.one_hot(mode, len(TEXT_MODES)).to(zi.dtype)
        out = {
            "image": self.image_head(zi),
            "text": self.text_head(zt),
            "fusion": self.fusion_head(torch.cat([zi, zt, onehot], 1)),
        }
        if self.aux_head is not None:
            out["aux"] = self.aux_head(image_feats)
        return out

    def forward(self, images, input_ids, attention_mask, mode) -> dict:
        image_feats = self.image_encoder.forward_features(images)
        text_feats = self.text_encoder.forward_features(input_ids, attention_mask)
        return self.forward_heads(image_feats, text_feats, mode)

    def late_fused(self, logits: dict, mode: torch.Tensor) -> torch.Tensor:
        w = self.late_weights[mode]  # B x findings x 3
        stacked = torch.stack([logits["fusion"], logits["image"], logits["text"]], -1)
        return (w * stacked).sum(-1)

    def temperature_scaled(self, logits: dict, mode: torch.Tensor) -> dict:
        """Late-fused, temperature-scaled logits (the temperatures fitted on validation at training time;
        the per-finding recalibration maps come after, core.model.recalibration_maps)."""
        logits = dict(logits, fusion=self.late_fused(logits, mode))
        return {name: logits[name] / self.temperature[h, mode] for h, name in enumerate(HEADS)}


def build_model(config: ModelConfig, *, pretrained_text: bool = True, image_weights: str = "none"):
    """(model, tokenizer). ``pretrained_text=False`` skips loading text weights (a
    checkpoint will fill them)."""
    tokenizer, text_encoder = text_family(config.text_type).load(config.text_backbone, pretrained=pretrained_text,
                                                                 options=config.text_options)
    config.text_options = text_encoder.options()
    model = FusionModel(config, text_encoder)
    load_image_weights(model.image_encoder, image_weights)
    return model, tokenizer


def image_weights_info(spec: str, datasets: str = "") -> dict:
    """What the image encoder starts from: kind, the collections its pretraining saw (a
    torchxrayvision file says so in its name; ``datasets`` (comma-separated) overrides) and the
    input scaling it expects (None = fit mean/std on the training images)."""
    from core.model.xrv_weights import XRV_MEAN, XRV_STD, datasets_from_name, is_xrv_state
    given = [d.strip() for d in datasets.split(",") if d.strip()]
    if spec == "none":
        return {"kind": "none", "datasets": given, "mean": None, "std": None}
    if spec == "imagenet":
        return {"kind": "imagenet", "datasets": given, "mean": None, "std": None}
    path = Path(spec)
    state = _read_image_weights_file(spec)
    if is_xrv_state(state):
        return {"kind": "torchxrayvision", "file": path.name, "datasets": given or datasets_from_name(path),
                "mean": XRV_MEAN, "std": XRV_STD}
    return {"kind": "file", "file": path.name, "datasets": given, "mean": None, "std": None}
