"""Out-of-distribution guard: is this upload a frontal chest X-ray at all?

It is independent of the diagnosis model on purpose: a classifier is confidently wrong on
a cat photo, so the guard must not ask it. Instead it models what frontal CXRs look like:

- a colour photograph is rejected at once (X-rays are gray; decode_image measures colour);
- the image is squashed to 32×32 (aspect ignored), standardised per image (so exposure and
  windowing barely matter), and projected on a PCA basis fitted on real frontal CXRs.
  Two numbers come out: the reconstruction error (how far from the CXR subspace) and the
  Mahalanobis distance inside it (how unusual within the subspace);
- plus edge density (text, drawings and photos have sharp edges; radiographs are smooth at
  64 px) and left-right symmetry (frontal chests are roughly mirror images; laterals and
  rotations are not).
These four features are standardised and combined into one Mahalanobis distance whose
threshold is a quantile (default 97.5%) of out-of-fold real CXRs.

A second stage, fitted when lateral views are given (``fit_ood(frontals, laterals=...)``),
asks *which view* a chest film is: a multinomial logistic regression on the same thumbnail
plus the aspect ratio, with three classes — whole frontal, lateral, part of a film (halves
and centre crops of frontals). A film whose frontal probability falls below the 1% quantile
of out-of-fold real frontals is flagged, with a message that says what to upload instead.

``score`` is that distance divided by the threshold: 1.0 is the boundary, above is OOD.
Measured on the IU X-ray copy (tests/model/test_ood.py prints the rates): ~3% of unseen real
CXRs flagged; photos, text, noise, CT/MR/US DICOMs, screenshots, 90° rotations flagged.
Histogram statistics (mean, std, dark/bright fractions, entropy) were tried and dropped:
with them a gamma change of real CXRs was flagged 9-11% (vs 2-3% now) and upside-down
CXRs only 80% (vs 100%), with no gain on any non-chest category.

    tensors = fit_ood(list_of_gray_uint8_arrays)          # dict[str, torch.Tensor] → safetensors
    det = OODDetector.from_tensors(tensors)
    det.check(decoded.gray, decoded.colorfulness)         # OODResult(out_of_distribution, score, reason)
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from core.errors import DataError
from core.model.description import WeightsError

THUMB = 32                # PCA works on THUMB×THUMB thumbnails
EDGE_SIDE = 64            # edge density is measured at this size
COLOR_THRESHOLD = 0.02    # decode_image colorfulness above this is a colour picture (CXRs are 0)
FLAT_STD = 1.0            # thumbnail std (gray levels) below this is a blank image
SCORE_CAP = 999.0         # keep scores finite and JSON-friendly
FEATURES = ("reconstruction", "pca_distance", "edges", "symmetry")
KEYS = ("pca_mean", "pca_components", "pca_variance", "feat_mean", "feat_std", "feat_precision",
        "threshold", "color_threshold")
VIEW_KEYS = ("view_coef", "view_intercept", "view_mean", "view_std", "view_threshold")
VIEWS = ("frontal", "lateral", "partial")
LATERAL_REASON = "lateral view: upload the frontal view"
PARTIAL_REASON = "part of a film (cropped or cut off): upload the whole frontal view"
# the view stage learnt frontal / lateral / part of a film from films only: an image unlike any film that it
# calls "part of a film" may as well be a photograph, so the reason says what is known
NOT_WHOLE_FRONTAL_REASON = ("not a whole frontal chest X-ray (part of a film, a photograph or another image): "
                            "upload the whole frontal view")


@dataclass
class OODResult:
    out_of_distribution: bool
    score: float              # ≥ 1.0 means out of distribution
    reason: str               # "" when in distribution


def _image_features(gray: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """(standardised 32×32 thumbnail as a vector, edge density, symmetry, thumbnail std)."""
    gray = np.asarray(gray)
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {gray.shape}")
    if gray.dtype != np.uint8:
        gray = gray.astype(np.float32)
    im = Image.fromarray(gray)
    # BOX = area average: anti-aliased, and cheap even from 2048 px.
    s64 = np.asarray(im.resize((EDGE_SIDE, EDGE_SIDE), Image.Resampling.BOX), dtype=np.float64)
    f = EDGE_SIDE // THUMB
    s32 = s64.reshape(THUMB, f, THUMB, f).mean(axis=(1, 3))
    std = float(s32.std())
    z = (s32 - s32.mean()) / max(std, 1e-3)
    z64 = (s64 - s64.mean()) / max(float(s64.std()), 1e-3)
    edges = float(np.abs(np.diff(z64, axis=1)).mean() + np.abs(np.diff(z64, axis=0)).mean()) / 2
    symmetry = float((z * z[:, ::-1]).mean()) if std >= FLAT_STD else 0.0   # correlation with mirror
    return z.ravel(), edges, symmetry, std


def _pca(z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = z.mean(axis=0)
    _, s, vt = np.linalg.svd(z - mean, full_matrices=False)
    return mean, vt[:k].T, (s[:k] ** 2) / max(len(z) - 1, 1)


def _pca_features(z: np.ndarray, mean, components, variance) -> np.ndarray:
    """log reconstruction error and log Mahalanobis distance inside the PCA subspace."""
    centred = z - mean
    coef = centred @ components
    resid = centred - coef @ components.T
    rec = np.log((resid ** 2).mean(axis=-1) + 1e-6)
    maha = np.log((coef ** 2 / variance).sum(axis=-1) + 1e-6)
    return np.stack([rec, maha], axis=-1)


def _distance(g: np.ndarray, feat_mean, feat_std, precision) -> tuple[np.ndarray, np.ndarray]:
    u = (g - feat_mean) / feat_std
    d2 = np.einsum("...i,ij,...j->...", u, precision, u)
    return np.sqrt(np.maximum(d2, 0.0)), u


def fit_ood(images: list[np.ndarray], *, laterals: list[np.ndarray] | None = None, n_components: int = 32,
            seed: int = 0, quantile: float | None = None, folds: int = 3,
            view_quantile: float = 0.01) -> dict[str, torch.Tensor]:
    """Fit the guard on real frontal CXRs (grayscale uint8 arrays, any size), and, with
    ``laterals``, the view stage (see the module docstring).

    The threshold is the ``quantile`` of *out-of-fold* distances (PCA fitted without the
    image), so it reflects unseen images rather than the ones the basis memorised. With the
    view stage the anomaly quantile is 0.99 (the view stage catches laterals and crops, so
    the first stage need not flag 2.5% of real films to catch them); without it, 0.975."""
    quantile = quantile if quantile is not None else (0.99 if laterals else 0.975)
    with _one_blas_thread():
        tensors, kept, oof_u = _fit(images, n_components=n_components, seed=seed, quantile=quantile, folds=folds)
        if laterals:
            tensors.update(_fit_view([images[i] for i in kept], oof_u, laterals, OODDetector.from_tensors(tensors),
                                     seed=seed, folds=folds, quantile=view_quantile))
        return tensors


def view_features(gray: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Standardised 32×32 thumbnail, log aspect ratio and its square (a half film is twice as
    wide or as tall as a whole one, either way) and the anomaly stage's standardised
    features ``u`` (reconstruction, PCA distance, edges, symmetry)."""
    z = _image_features(gray)[0]
    h, w = np.asarray(gray).shape
    a = np.log(h / w)
    return np.concatenate([z, [a * 4.0, a * a * 16.0], u])


def partial_views(gray: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Halves and centre crops of a frontal film: what a cut-off upload looks like."""
    h, w = gray.shape
    views = [gray[: h // 2], gray[h // 2:], gray[:, : w // 2], gray[:, w // 2:],
             gray[h // 4: 3 * h // 4, w // 4: 3 * w // 4]]
    fh, fw = rng.uniform(0.35, 0.7, 2)
    y0, x0 = int(rng.uniform(0, 1 - fh) * h), int(rng.uniform(0, 1 - fw) * w)
    views.append(gray[y0: y0 + max(8, int(fh * h)), x0: x0 + max(8, int(fw * w))])
    return views


def _fit_view(frontals, frontal_u, laterals, stage1: OODDetector, *, seed: int, folds: int,
              quantile: float) -> dict[str, torch.Tensor]:
    """Frontals use their out-of-fold anomaly features (as an unseen film would have)."""
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(seed)
    crops = [v for g in frontals for v in rng.permutation(np.array(partial_views(g, rng), dtype=object))[:2]]
    others = [view_features(g, stage1._gray_distance(g)[1]) for g in [*laterals, *crops]]
    X = np.stack([*(view_features(g, u) for g, u in zip(frontals, frontal_u, strict=True)), *others])
    y = np.array([0] * len(frontals) + [1] * len(laterals) + [2] * len(crops))
    mean, std = X.mean(axis=0), X.std(axis=0) + 1e-6
    X = (X - mean) / std

    def fit(idx):
        return LogisticRegression(C=0.05, max_iter=400).fit(X[idx], y[idx])
    p_frontal = np.zeros(len(frontals))
    order = rng.permutation(len(X))
    for fold in np.array_split(order, folds):
        clf = fit(np.setdiff1d(order, fold))
        mine = fold[fold < len(frontals)]
        p_frontal[mine] = clf.predict_proba(X[mine])[:, 0]
    clf = fit(np.arange(len(X)))
    t = _to_tensor
    return {"view_coef": t(clf.coef_), "view_intercept": t(clf.intercept_), "view_mean": t(mean),
            "view_std": t(std), "view_threshold": t(np.quantile(p_frontal, quantile))}


def _one_blas_thread():
    """Fitting runs beside training jobs; oversubscribed OpenBLAS threads spin-wait and made
    these small SVDs 10-50× slower (measured here on 2 busy cores). One thread is as fast idle."""
    try:
        from threadpoolctl import threadpool_limits  # ships with scikit-learn
        return threadpool_limits(limits=1, user_api="blas")
    except ImportError:
        return contextlib.nullcontext()


def _fit(images, *, n_components, seed, quantile, folds):
    if len(images) < max(50, 4 * n_components):
        raise DataError(f"fit_ood needs at least {max(50, 4 * n_components)} images, got {len(images)}; "
                        "give it more training images")
    feats = [_image_features(g) for g in images]
    keep = [f for f in feats if f[3] >= FLAT_STD]              # a blank frame is not a CXR example
    z = np.stack([f[0] for f in keep])
    extra = np.array([[f[1], f[2]] for f in keep])
    order = np.random.default_rng(seed).permutation(len(z))
    g = np.zeros((len(z), len(FEATURES)))
    for fold in np.array_split(order, folds):
        train = np.setdiff1d(order, fold)
        g[fold, :2] = _pca_features(z[fold], *_pca(z[train], n_components))
    g[:, 2:] = extra
    feat_mean, feat_std = g.mean(axis=0), g.std(axis=0) + 1e-6
    corr = np.corrcoef(((g - feat_mean) / feat_std).T)
    precision = np.linalg.inv(corr + 1e-3 * np.eye(len(FEATURES)))  # tiny ridge: well-conditioned
    dist, oof_u = _distance(g, feat_mean, feat_std, precision)
    mean, components, variance = _pca(z, n_components)
    t = _to_tensor
    kept = [i for i, f in enumerate(feats) if f[3] >= FLAT_STD]
    return ({"pca_mean": t(mean), "pca_components": t(components), "pca_variance": t(variance),
             "feat_mean": t(feat_mean), "feat_std": t(feat_std), "feat_precision": t(precision),
             "threshold": t(np.quantile(dist, quantile)), "color_threshold": t(COLOR_THRESHOLD)}, kept, oof_u)


def _to_tensor(a) -> torch.Tensor:
    return torch.tensor(np.array(a, dtype=np.float32, order="C"))   # safetensors wants contiguous


def _to_numpy(x) -> np.ndarray:
    return np.asarray(x.detach().cpu().double() if torch.is_tensor(x) else x, dtype=np.float64)


class OODDetector:
    def __init__(self, *, pca_mean, pca_components, pca_variance, feat_mean, feat_std,
                 feat_precision, threshold, color_threshold=COLOR_THRESHOLD, view_coef=None,
                 view_intercept=None, view_mean=None, view_std=None, view_threshold=None):
        a = _to_numpy
        self.pca_mean, self.pca_components, self.pca_variance = a(pca_mean), a(pca_components), a(pca_variance)
        self.feat_mean, self.feat_std, self.feat_precision = a(feat_mean), a(feat_std), a(feat_precision)
        self.threshold, self.color_threshold = float(a(threshold)), float(a(color_threshold))
        if self.pca_mean.shape != (THUMB * THUMB,) or self.feat_mean.shape != (len(FEATURES),):
            raise WeightsError("the weights' OOD tensors do not match this version of the tool; "
                               "refit them with fit_ood")
        self.view = None
        if view_coef is not None:
            self.view = {k: a(v) for k, v in dict(coef=view_coef, intercept=view_intercept, mean=view_mean,
                                                  std=view_std).items()}
            self.view_threshold = float(a(view_threshold))

    @classmethod
    def from_tensors(cls, d: dict[str, torch.Tensor]) -> OODDetector:
        missing = [k for k in KEYS if k not in d and k != "color_threshold"]
        if missing:
            raise WeightsError(f"the weights' OOD tensors lack {', '.join(missing)}; refit them with fit_ood")
        return cls(**{k: d[k] for k in (*KEYS, *VIEW_KEYS) if k in d})

    def view_probabilities(self, gray: np.ndarray, u: np.ndarray | None = None) -> dict[str, float] | None:
        """P(frontal, lateral, partial) from the view stage, or None when it was not fitted."""
        if self.view is None:
            return None
        if u is None:
            u = self._gray_distance(gray)[1]
        x = (view_features(gray, u) - self.view["mean"]) / self.view["std"]
        z = self.view["coef"] @ x + self.view["intercept"]
        p = np.exp(z - z.max())
        return dict(zip(VIEWS, (p / p.sum()).tolist(), strict=True))

    def _gray_distance(self, gray: np.ndarray) -> tuple[float, np.ndarray, float]:
        z, edges, symmetry, std = _image_features(gray)
        g = np.concatenate([_pca_features(z, self.pca_mean, self.pca_components, self.pca_variance),
                            [edges, symmetry]])
        dist, u = _distance(g, self.feat_mean, self.feat_std, self.feat_precision)
        return float(dist), u, std

    def score(self, gray: np.ndarray, colorfulness: float = 0.0) -> float:
        """Distance relative to the threshold: ≥ 1.0 is out of distribution."""
        return self.check(gray, colorfulness).score

    def check(self, gray: np.ndarray, colorfulness: float = 0.0) -> OODResult:
        dist, u, std = self._gray_distance(gray)
        score = min(dist / self.threshold, SCORE_CAP) if np.isfinite(dist) else SCORE_CAP
        if colorfulness > self.color_threshold:
            colour = min(colorfulness / self.color_threshold, SCORE_CAP)
            return OODResult(True, round(max(score, colour), 4), "colour photograph")
        if std < FLAT_STD:
            return OODResult(True, SCORE_CAP, "blank or uniform image")
        views = self.view_probabilities(gray, u)
        if views is not None:
            # below the view threshold: a ratio above 1, like the anomaly score
            view_score = (1 - views["frontal"]) / max(1 - self.view_threshold, 1e-6)
            other = max(("lateral", "partial"), key=views.get)
            if views["frontal"] < self.view_threshold or (score >= 1.0 and views[other] > views["frontal"]):
                reason = LATERAL_REASON if other == "lateral" else (
                    PARTIAL_REASON if score < 1.0 else NOT_WHOLE_FRONTAL_REASON)
                return OODResult(True, round(max(score, view_score, 1.0), 4), reason)
        if score < 1.0:
            return OODResult(False, min(round(score, 4), 0.9999), "")   # rounding never crosses 1.0
        return OODResult(True, round(score, 4), _reason(u))


def _reason(u: np.ndarray) -> str:
    """Name the feature furthest from real CXRs, in words a user can act on."""
    i = int(np.argmax(np.abs(u)))
    if i in (0, 1):
        return "layout unlike a frontal chest X-ray"
    if i == 2:
        if u[2] > 0:
            return "sharp edges unlike an X-ray (text, drawing or photo)"
        return "too smooth or blurred for an X-ray"
    return "not left-right symmetric like a frontal chest X-ray (lateral view or rotated?)"
