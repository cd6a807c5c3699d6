"""Attribution: why the model gave a finding its probability. An image heatmap (Grad-CAM or
Integrated Gradients) and per-token text scores (Integrated Gradients on the word embeddings),
always on the eager fp32 modules (they need gradients), whatever the predict path serves."""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from core.data.labels import Head, TextMode, effective_mode
from core.serving.prediction import Attribution, InputError, check_choice

METHODS = ("gradcam", "ig")


def attribute(predictor, gray: np.ndarray, text: str, mode: str, *, finding: str, head: str, method: str,
              ig_steps: int) -> Attribution:
    """One finding and head of one study, on ``predictor``'s model (core.serving.predictor.Predictor;
    the caller holds its hooks lock: Captum hooks the shared modules)."""
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, LayerIntegratedGradients
    p = predictor
    check_choice("text mode", mode, p.text_modes)
    check_choice("finding", finding, p.findings)
    check_choice("head", head, p.heads)
    if method not in METHODS:
        raise InputError("unknown attribution method; use gradcam or ig")
    t0 = time.perf_counter()
    mode = effective_mode(text, mode)
    if head == Head.TEXT and mode == TextMode.NONE:
        raise InputError("the text head reads only the text, and there is none: explain the image or fusion head")
    if head == Head.TEXT and method != "ig":
        raise InputError("Grad-CAM explains image regions and the text head does not look at the image; "
                         "use Integrated Gradients (per-word scores)")
    k = p.findings.index(finding)
    model, text_encoder, size = p.model, p.attr_text_encoder, p.size
    mode_idx = torch.tensor([p.text_modes.index(mode)])
    x = p.image_tensor(gray)
    with torch.no_grad():
        img_feat = model.image_encoder.forward_features(x)
        if mode != TextMode.NONE:
            enc = p.tokens([text])
            txt_feat = text_encoder.forward_features(enc["input_ids"], enc["attention_mask"])
        else:
            txt_feat = torch.zeros(1, model.text_encoder.out_dim)

    def from_image(images):
        feats = model.image_encoder.forward_features(images)
        m = mode_idx.expand(len(images))
        return model.temperature_scaled(model.forward_heads(feats, txt_feat.expand(len(images), -1), m), m)[head][:, k]

    delta = None
    if head == Head.TEXT:  # no image input reaches this head: no heatmap (Captum would fail on an unused input)
        heat = torch.zeros(1, 1, size, size)
    elif method == "gradcam":
        cam = LayerGradCam(from_image, model.image_encoder.features)
        attr = cam.attribute(x, relu_attributions=True)
        heat = LayerAttribution.interpolate(attr, (size, size), interpolate_mode="bilinear")
    else:
        ig = IntegratedGradients(from_image)
        attr, d = ig.attribute(x, baselines=torch.zeros_like(x), n_steps=ig_steps, internal_batch_size=ig_steps,
                               return_convergence_delta=True)
        heat = F.avg_pool2d(attr.abs(), 5, stride=1, padding=2)  # smooth pixel noise for display
        delta = float(d.abs().max())
    heat = heat[0, 0].detach().numpy()
    heat = heat - heat.min()
    heat = heat / heat.max() if heat.max() > 0 else heat

    tokens = []
    if mode != TextMode.NONE and head != Head.IMAGE:
        ids, mask = enc["input_ids"], enc["attention_mask"]
        tokenizer = p.tokenizer
        baseline = ids.clone()
        special = torch.tensor(tokenizer.get_special_tokens_mask(ids[0].tolist(),
                                                                 already_has_special_tokens=True)).bool()
        baseline[0, ~special] = tokenizer.pad_token_id or 0

        def from_text(input_ids):
            n = len(input_ids)
            feats = text_encoder.forward_features(input_ids, mask.expand(n, -1))
            m = mode_idx.expand(n)
            return model.temperature_scaled(model.forward_heads(img_feat.expand(n, -1), feats, m), m)[head][:, k]

        lig = LayerIntegratedGradients(from_text, text_encoder.word_embeddings())
        attr = lig.attribute(ids, baselines=baseline, n_steps=ig_steps, internal_batch_size=ig_steps)
        scores = attr.sum(-1)[0].detach().numpy()
        pieces = tokenizer.convert_ids_to_tokens(ids[0].tolist())
        tokens = [(piece, float(s)) for piece, s, sp in zip(pieces, scores, special.tolist(), strict=True) if not sp]
    return Attribution(finding=finding, head=head, method=method, heatmap=heat.astype(np.float32),
                       tokens=tokens, words=text_encoder.merge_pieces(tokens),
                       convergence_delta=delta, seconds=time.perf_counter() - t0)
