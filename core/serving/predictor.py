"""The one object the pages and command-line tools call: load once, predict, attribute.

    predictor = Predictor.load("weights")
    result = predictor.predict(gray, text="Heart size is enlarged.", mode="report")
    heat = predictor.attribute(gray, text, mode="report", finding="Cardiomegaly")
"""
from __future__ import annotations

import copy
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.data.labels import effective_mode
from core.data.preprocess import prepare
from core.errors import CxrError
from core.evaluation.evidence import evidence_for, image_reliable
from core.evaluation.operating_points import discordance
from core.model.checkpoint import load_weights
from core.model.description import model_facts
from core.model.frozen import frozen_features, optimise_for_inference
from core.serving.gc_pause import collector_paused


class InputError(CxrError, ValueError):
    """Input the model cannot take (unknown mode, bad finding...)."""


@dataclass
class Prediction:
    fusion: dict[str, float]
    image: dict[str, float]
    text: dict[str, float]
    thresholds: dict[str, float]                 # fused head, for this text mode
    head_thresholds: dict[str, dict[str, float]]  # every head, for this text mode
    discordant: list[str]                        # findings of ``discordance`` (report mode only)
    out_of_distribution: bool
    ood_score: float
    ood_reason: str
    text_mode: str
    has_text: bool
    model: str
    latency_ms: float = 0.0
    # held-out evidence for the fused number of each finding in this mode (core.evaluation.evidence)
    evidence: dict[str, dict] = field(default_factory=dict)
    head_evidence: dict[str, dict[str, dict]] = field(default_factory=dict)
    image_reliable: dict[str, bool] = field(default_factory=dict)
    # report QA: finding, direction, score, margin; strongest first (core.evaluation.operating_points)
    discordance: list[dict] = field(default_factory=list)
    discordance_score: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)

    def positive(self, head: str = "fusion") -> list[str]:
        probs = getattr(self, head)  # finding -> probability, in the weights' order
        return [f for f in probs if probs[f] >= self.head_thresholds[head][f]]


@dataclass
class Attribution:
    finding: str
    head: str
    method: str
    heatmap: np.ndarray                  # H x W in [0, 1], at the model's input size
    tokens: list[tuple[str, float]] = field(default_factory=list)  # (word piece, signed score)
    words: list[tuple[str, float]] = field(default_factory=list)   # pieces merged into words by the encoder
    convergence_delta: float | None = None
    seconds: float = 0.0


def qa_points(metadata: dict) -> dict:
    """Report-QA operating points of the findings the image supports (core.evaluation.operating_points,
    core.evaluation.evidence); the others are never flagged."""
    points = (metadata.get("discordance") or {}).get("points") or {}
    reliable = image_reliable(metadata, points)
    return {f: op for f, op in points.items() if reliable[f]}


def release_freed_memory() -> None:
    """Hand memory freed by the loader back to the OS (glibc keeps it otherwise)."""
    import ctypes
    import gc
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


class Predictor:
    def __init__(self, model, tokenizer, metadata: dict, ood_tensors: dict | None = None, *,
                 fast: bool = True, int8_dir: Path | None = None) -> None:
        model.eval()
        # attribution needs gradients through the text encoder: keep it in fp32 for that
        # the text encoder stays fp32 (see core.model.frozen: int8 made a study's result depend on its
        # batch-mates), so attribution can use it as it is
        self.model = optimise_for_inference(model, quantize=False) if fast else model
        self.attr_text_encoder = self.model.text_encoder
        self.tokenizer = tokenizer
        self.metadata = metadata
        pre = metadata["preprocessing"]
        self.size, self.mean, self.std = int(pre["image_size"]), float(pre["mean"]), float(pre["std"])
        self.max_len = int(metadata.get("text_max_len", 160))
        # the predict path's encoders: eager here; freeze_encoders() swaps in frozen ones
        self.image_features = self.model.image_encoder.forward_features
        self.text_features = self.model.text_encoder.forward_features
        self.fast = fast
        # the int8 image encoder (core.model.int8_image): built by build_int8_image() from the
        # calibration in ``int8_dir`` (the weights folder), served once freeze_encoders() has traced it
        self._int8_dir = Path(int8_dir) if fast and int8_dir is not None else None
        self._int8_image = None
        self.int8_status = "not built" if self._int8_dir else "no weights folder to find a calibration in"
        self.image_precision = "fp32"  # of the predict path's image encoder; "int8" once served
        # held while Captum's hooks are on the shared modules (attribute) or while they are traced
        # (freeze_encoders): a trace must not run a hook, and a hook must not see a trace's tensors
        self._hooks_lock = threading.Lock()
        self.version = metadata.get("version", "unknown")
        # what this model predicts comes from its weights (core.model.description), not from this code
        facts = model_facts(metadata)
        self.findings, self.heads, self.text_modes = facts.findings, facts.heads, facts.text_modes
        self.evidence = {m: {h: evidence_for(metadata, m, h, self.findings) for h in self.heads}
                         for m in self.text_modes}
        self.image_reliable = image_reliable(metadata, self.findings)
        self.qa_points = qa_points(metadata)
        self.ood = None
        if ood_tensors:
            from core.model.guard import OODDetector
            self.ood = OODDetector.from_tensors(ood_tensors)

    @property
    def served_version(self) -> str:
        """The weights' version, marked "+int8" while the int8 image encoder serves: a logged
        row says which of the two computed it (they differ by up to a few hundredths)."""
        return f"{self.version}+int8" if self.image_precision == "int8" else self.version

    def build_int8_image(self) -> bool:
        """Build the int8 image encoder from the weights' calibration (core.model.int8_image, ~1.4 s;
        the file is read here, off the first prediction's path). Works on a copy of the
        encoder, so it may run beside predictions; freeze_encoders() serves it. False (and
        ``int8_status`` says why) when there is none to build."""
        if self._int8_image is not None or self._int8_dir is None:
            return self._int8_image is not None
        from core.model.int8_image import find_calibration, served_encoder
        calibration, why = find_calibration(self._int8_dir)
        self._int8_dir = None  # built or refused: either way, once
        if calibration is not None:
            with self._hooks_lock:  # the copy must not carry an attribution's hooks
                encoder = copy.deepcopy(self.model.image_encoder)
            self._int8_image, why = served_encoder(encoder, calibration, self.size)
        self.int8_status = why or "built"
        return self._int8_image is not None

    def freeze_encoders(self, *, int8: bool = True) -> list[str]:
        """Swap TorchScript-frozen encoders into the predict path where they match eager on
        inputs of several batch sizes and lengths (core.model.frozen.frozen_features); returns which
        ("image (int8)" when the int8 image encoder serves: ``int8=True`` and the weights
        have a calibration, core.model.int8_image). Takes ~2.5 s (tracing and the graphs' first
        runs), so the app does it on its background thread after the first prediction,
        holding its model lock (ui.resources); both graphs are swapped in at the end. An
        attribution waits for the trace (``_hooks_lock``), and always uses the eager fp32
        modules."""
        if not self.fast:
            return []
        if int8:
            self.build_int8_image()
        images = [torch.linspace(-2, 2, n * self.size * self.size).reshape(n, 1, self.size, self.size)
                  .contiguous(memory_format=torch.channels_last) for n in (1, 3)]
        texts = [["The heart is enlarged.", "No acute cardiopulmonary abnormality. The lungs are clear."],
                 ["Cough."], ["Mild pulmonary edema.", "Normal.", "Heart size is at the upper limits of normal."]]
        encoded = [self._tokens(t) for t in texts]
        image = None
        with self._hooks_lock:
            if int8 and self._int8_image is not None:
                # quantised ops are not oneDNN Graph (LLGA) patterns: traced without fusion
                image = frozen_features(self._int8_image, [(x,) for x in images])
                self.int8_status = "serving" if image is not None else "trace differed from eager int8; fp32 serves"
            precision = "int8" if image is not None else "fp32"
            if image is None:
                image = frozen_features(self.model.image_encoder, [(x,) for x in images], onednn_fusion=True)
            text = frozen_features(self.model.text_encoder, [(e["input_ids"], e["attention_mask"]) for e in encoded])
        frozen = []
        # swapped in together, once all compiling is done
        if image is not None:
            self.image_features = image
            self.image_precision = precision
            frozen.append("image (int8)" if precision == "int8" else "image")
        if text is not None:
            self.text_features = text
            frozen.append("text")
        return frozen

    @classmethod
    def load(cls, weights_dir: str | Path = "weights", *, fast: bool = True,
             release_memory: bool = True) -> Predictor:
        """``fast`` folds BatchNorm (core.model.frozen) and, when the folder has a calibration, serves
        the image encoder in int8 once ``freeze_encoders()`` has run (core.model.int8_image);
        False is the plain fp32 eager model, the reference the fast path is tested against.
        ``release_memory=False`` leaves ``release_freed_memory()`` (~0.2 s) to the caller."""
        with collector_paused():  # ~0.75 s less of a cold load (core.serving.gc_pause)
            model, tokenizer, metadata, ood = load_weights(Path(weights_dir))
            predictor = cls(model, tokenizer, metadata, ood, fast=fast, int8_dir=Path(weights_dir))
        if release_memory:
            release_freed_memory()  # loading leaves a few hundred MB of freed fp16/fp32 copies
        return predictor

    # ----------------------------------------------------------------- inputs
    def _check_mode(self, mode: str) -> None:
        if mode not in self.text_modes:
            raise InputError(f"unknown text mode {mode!r}; use one of {', '.join(self.text_modes)}")

    def image_tensor(self, gray: np.ndarray) -> torch.Tensor:
        return prepare(gray, size=self.size, mean=self.mean, std=self.std).unsqueeze(0)

    def _tokens(self, texts: list[str]):
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_len, return_tensors="pt")

    # ---------------------------------------------------------------- predict
    @torch.inference_mode()
    def predict_batch(self, grays: list[np.ndarray], texts: list[str], modes: list[str], *,
                      colorfulness: list[float] | None = None) -> list[Prediction]:
        t0 = time.perf_counter()
        for m in modes:
            self._check_mode(m)
        modes = [effective_mode(t, m) for t, m in zip(texts, modes, strict=True)]
        x = torch.cat([self.image_tensor(g) for g in grays]).contiguous(memory_format=torch.channels_last)
        img = self.image_features(x)
        txt = torch.zeros(len(texts), self.model.text_encoder.out_dim)
        with_text = [i for i, m in enumerate(modes) if m != "none"]
        if with_text:
            enc = self._tokens([texts[i] for i in with_text])
            txt[with_text] = self.text_features(enc["input_ids"], enc["attention_mask"])
        mode_idx = torch.tensor([self.text_modes.index(m) for m in modes])
        logits = self.model.calibrated(self.model.forward_heads(img, txt, mode_idx), mode_idx)
        probs = {h: torch.sigmoid(logits[h]).numpy() for h in self.heads}
        ms = (time.perf_counter() - t0) * 1000 / len(grays)
        out = []
        for i, mode in enumerate(modes):
            p = {h: {f: float(probs[h][i, k]) for k, f in enumerate(self.findings)} for h in self.heads}
            thr = self.metadata["thresholds"][mode]
            ood = self.ood.check(grays[i], colorfulness[i] if colorfulness else 0.0) if self.ood else None
            # report QA exists in report mode only: an indication rarely names the finding
            disc = discordance(p["image"], p["text"], thr["text"], self.qa_points) if mode == "report" else []
            out.append(Prediction(
                fusion=p["fusion"], image=p["image"], text=p["text"], thresholds=dict(thr["fusion"]),
                head_thresholds={h: dict(thr[h]) for h in self.heads},
                discordant=[d["finding"] for d in disc],
                out_of_distribution=bool(ood.out_of_distribution) if ood else False,
                ood_score=float(ood.score) if ood else 0.0, ood_reason=ood.reason if ood else "",
                text_mode=mode, has_text=mode != "none", model=self.served_version, latency_ms=ms,
                evidence=copy.deepcopy(self.evidence[mode]["fusion"]),
                head_evidence=copy.deepcopy(self.evidence[mode]), image_reliable=dict(self.image_reliable),
                discordance=disc, discordance_score=max((d["score"] for d in disc), default=0.0)))
        return out

    def predict(self, gray: np.ndarray, text: str = "", mode: str = "report", *,
                colorfulness: float = 0.0) -> Prediction:
        return self.predict_batch([gray], [text], [mode], colorfulness=[colorfulness])[0]

    # -------------------------------------------------------------- attribute
    def attribute(self, gray: np.ndarray, text: str = "", mode: str = "report", *, finding: str,
                  head: str = "fusion", method: str = "gradcam", ig_steps: int = 16) -> Attribution:
        """Image heatmap (Grad-CAM or Integrated Gradients) and per-token text scores
        (Integrated Gradients on the word embeddings) for one finding and head."""
        with self._hooks_lock:  # Captum hooks the shared modules: never while they are traced
            return self._attribute(gray, text, mode, finding=finding, head=head, method=method, ig_steps=ig_steps)

    def _attribute(self, gray: np.ndarray, text: str, mode: str, *, finding: str, head: str, method: str,
                   ig_steps: int) -> Attribution:
        from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, LayerIntegratedGradients
        self._check_mode(mode)
        if finding not in self.findings:
            raise InputError(f"unknown finding {finding!r}; use one of {', '.join(self.findings)}")
        if head not in self.heads:
            raise InputError(f"unknown head {head!r}; use one of {', '.join(self.heads)}")
        if method not in ("gradcam", "ig"):
            raise InputError("unknown attribution method; use gradcam or ig")
        t0 = time.perf_counter()
        mode = effective_mode(text, mode)
        if head == "text" and mode == "none":
            raise InputError("the text head reads only the text, and there is none: explain the image or fusion head")
        if head == "text" and method != "ig":
            raise InputError("Grad-CAM explains image regions and the text head does not look at the image; "
                             "use Integrated Gradients (per-word scores)")
        k = self.findings.index(finding)
        model = self.model
        mode_idx = torch.tensor([self.text_modes.index(mode)])
        x = self.image_tensor(gray)
        with torch.no_grad():
            img_feat = model.image_encoder.forward_features(x)
            if mode != "none":
                enc = self._tokens([text])
                txt_feat = self.attr_text_encoder.forward_features(enc["input_ids"], enc["attention_mask"])
            else:
                txt_feat = torch.zeros(1, model.text_encoder.out_dim)

        def from_image(images):
            feats = model.image_encoder.forward_features(images)
            m = mode_idx.expand(len(images))
            return model.calibrated(model.forward_heads(feats, txt_feat.expand(len(images), -1), m), m)[head][:, k]

        delta = None
        if head == "text":  # no image input reaches this head: no heatmap (Captum would fail on an unused input)
            heat = torch.zeros(1, 1, self.size, self.size)
        elif method == "gradcam":
            cam = LayerGradCam(from_image, model.image_encoder.features)
            attr = cam.attribute(x, relu_attributions=True)
            heat = LayerAttribution.interpolate(attr, (self.size, self.size), interpolate_mode="bilinear")
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
        if mode != "none" and head != "image":
            ids, mask = enc["input_ids"], enc["attention_mask"]
            pad = self.tokenizer.pad_token_id or 0
            baseline = ids.clone()
            special = torch.tensor(self.tokenizer.get_special_tokens_mask(ids[0].tolist(),
                                                                          already_has_special_tokens=True)).bool()
            baseline[0, ~special] = pad

            def from_text(input_ids):
                n = len(input_ids)
                feats = self.attr_text_encoder.forward_features(input_ids, mask.expand(n, -1))
                m = mode_idx.expand(n)
                return model.calibrated(model.forward_heads(img_feat.expand(n, -1), feats, m), m)[head][:, k]

            lig = LayerIntegratedGradients(from_text, self.attr_text_encoder.word_embeddings())
            attr = lig.attribute(ids, baselines=baseline, n_steps=ig_steps, internal_batch_size=ig_steps)
            scores = attr.sum(-1)[0].detach().numpy()
            pieces = self.tokenizer.convert_ids_to_tokens(ids[0].tolist())
            tokens = [(p, float(s)) for p, s, sp in zip(pieces, scores, special.tolist(), strict=True) if not sp]
        return Attribution(finding=finding, head=head, method=method, heatmap=heat.astype(np.float32),
                           tokens=tokens, words=self.attr_text_encoder.merge_pieces(tokens),
                           convergence_delta=delta, seconds=time.perf_counter() - t0)
