"""Weights on disk: one safetensors file holding the tensors *and* the JSON metadata.

    weights/model.safetensors   tensors + metadata (labels, thresholds, preprocessing,
                                backbones, config, split, metrics, git commit)
    weights/metadata.json       a readable copy of the same metadata (never loaded)
    weights/eval/*.json         evaluation results written by scripts/evaluate.py

One file means one atomic ``os.replace``: a crash mid-write leaves the previous model.
Loading never unpickles and never touches the network. The metadata carries a SHA-256 of
itself and of every tensor (``content_sha256``), so a file altered after saving (a flipped
byte, an edited threshold) is refused; files written before that key existed load unchecked.
The text encoder's embedding tables stay frozen during training and are not stored (they come from the named
backbone, checked by fingerprint); both encoders are stored in fp16 (the folder stays
well under 60 MB) and training evaluates the rounded model, so the metrics are those of
the file.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from core.model.description import (  # noqa: F401 (re-exported)
    METADATA_FILE,
    WEIGHTS_FILE,
    ModelDescription,
    ModelFacts,
    WeightsError,
    describe,
    model_facts,
    read_metadata,
)
from core.model.fusion import FusionModel, ModelConfig, build_model

OOD_PREFIX = "ood."
_HALF_PREFIXES = ("text_encoder.", "image_encoder.")  # stored in fp16; heads stay fp32
DIGEST_KEY = "content_sha256"


def round_to_storage(model: FusionModel) -> None:
    """Round the encoders to the fp16 they are stored in, so what is evaluated before
    saving is exactly what loads afterwards."""
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.startswith(_HALF_PREFIXES) and t.is_floating_point():
                t.copy_(t.half().float())


def embedding_fingerprint(model: FusionModel) -> str:
    return model.text_encoder.fingerprint()


def _facts(metadata: dict, config: ModelConfig, where: Path) -> ModelFacts:
    facts = model_facts(metadata)
    if len(facts.findings) != config.num_findings:
        raise WeightsError(f"{where}: {len(facts.findings)} findings named for a model with {config.num_findings} "
                           "outputs; give the metadata one label per output")
    return facts


def _backbone_prefixes(model: FusionModel) -> tuple[str, ...]:
    """State names that come from the text backbone, not the file (core.model.text_encoders)."""
    return tuple("text_encoder." + p for p in model.text_encoder.backbone_prefixes)


def _tensors_to_save(model: FusionModel, ood: dict | None) -> dict[str, torch.Tensor]:
    out = {}
    skip = _backbone_prefixes(model)
    for name, t in model.state_dict().items():
        if skip and name.startswith(skip):
            continue
        t = t.detach().cpu()
        if name.startswith(_HALF_PREFIXES) and t.is_floating_point():
            t = t.half()
        out[name] = t.contiguous()
    for name, t in (ood or {}).items():
        out[OOD_PREFIX + name] = t.detach().cpu().contiguous()
    return out


def content_digest(tensors: dict[str, torch.Tensor], metadata: dict) -> str:
    """SHA-256 over the metadata (less this digest) and every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256(json.dumps({k: v for k, v in metadata.items() if k != DIGEST_KEY}, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_weights(model: FusionModel, description: ModelDescription | dict, out_dir: Path, *,
                 ood: dict | None = None) -> Path:
    out_dir = Path(out_dir)
    metadata = describe(description).to_metadata()
    facts = _facts(metadata, model.config, out_dir)  # the weights carry findings, heads and text modes
    metadata = dict(metadata, **facts.to_metadata(), model_config=model.config.to_dict(),
                    text_embedding_fingerprint=embedding_fingerprint(model))
    metadata = json.loads(json.dumps(metadata))  # exactly what a load will read back
    tensors = _tensors_to_save(model, ood)
    metadata[DIGEST_KEY] = content_digest(tensors, metadata)
    text = json.dumps(metadata, sort_keys=True)
    _atomic_write(out_dir / WEIGHTS_FILE, lambda tmp: save_file(tensors, tmp, metadata={"cxr": text}))

    def write_json(tmp):
        Path(tmp).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    _atomic_write(out_dir / METADATA_FILE, write_json)
    return out_dir / WEIGHTS_FILE


def load_weights(weights_dir: Path) -> tuple[FusionModel, object, dict, dict]:
    """(model in eval mode, tokenizer, metadata, OOD tensors)."""
    metadata = read_metadata(weights_dir)
    path = Path(weights_dir) / WEIGHTS_FILE
    try:
        with safe_open(str(path), framework="pt") as fh:
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:
        raise WeightsError(f"{path} is damaged ({type(exc).__name__}); retrain or restore it") from None
    expected = metadata.get(DIGEST_KEY)
    if expected is not None and content_digest(tensors, metadata) != expected:
        raise WeightsError(f"{path} is damaged or was altered after it was saved (checksum mismatch); "
                           "retrain or restore it")
    config = ModelConfig.from_dict(metadata["model_config"])
    _facts(metadata, config, weights_dir)
    model, tokenizer = build_model(config, pretrained_text=True, image_weights="none")
    # training evaluates (and fingerprints) the model after rounding to storage precision, so the
    # backbone's tables are accepted as they are or rounded to fp16
    if not model.text_encoder.match_backbone(metadata.get("text_embedding_fingerprint")):
        raise WeightsError(f"text backbone {config.text_backbone!r} differs from the one these weights were "
                           "trained on; install the backbone they name or retrain")
    ood = {k[len(OOD_PREFIX):]: v for k, v in tensors.items() if k.startswith(OOD_PREFIX)}
    state = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items() if not k.startswith(OOD_PREFIX)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    # weights from before late fusion have no late_weights: the default is the fusion head alone
    skip = _backbone_prefixes(model)
    missing = [m for m in missing if not (skip and m.startswith(skip)) and m != "late_weights"]
    if missing or unexpected:
        raise WeightsError(f"{path} does not match this model ({len(missing)} missing, "
                           f"{len(unexpected)} unexpected tensors); retrain or restore it")
    model.eval()
    return model, tokenizer, metadata, ood
