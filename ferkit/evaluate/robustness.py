"""Robustness of a classifier to corrupted faces: eight corruptions of 48x48 gray crops at five
severities each, in the spirit of ImageNet-C (Hendrycks & Dietterich, ICLR 2019), and the scores
of classifiers on FER2013 PrivateTest under them, against FER2013's labels and the FER+ majority.

The corruptions need numpy and Pillow only (:mod:`ferkit.imageops`). Until ferkit 0.2 they ran
through OpenCV: the JPEG round trip is bit-identical to OpenCV's, blur, resizing and rotation
agree within a grey level or so on most pixels, so scores may differ slightly from
``benchmarks/results/robustness.md``, which OpenCV's versions produced. Each is deterministic for
a seed, and its random draws (noise, patch centres, rotation directions) depend on the seed and
the corruption, not on the severity, so a higher severity is the same change made stronger.
Severity 0 is the clean image.

Severities 1-5 (pixel values 0..255; ImageNet-C's values where they carry over to 48x48 faces,
and where they do not, chosen so that severities 1-3 lie about within the photo degradations
``configs/default-ferplus.toml`` trains on and 4-5 beyond them):

============== =================================================== ==============================
corruption     severities 1..5                                     ImageNet-C / ferkit's training
============== =================================================== ==============================
gaussian_noise sigma 2, 4, 6, 10, 15% of the range                 8-38% at 224 px / 1-8%
gaussian_blur  sigma 0.5, 0.75, 1, 1.5, 2 px                       1-6 px at 224 px / 0.5-1.5 px
jpeg           quality 25, 18, 15, 10, 7                           the same / 15-75
low_resolution down to 32, 24, 16, 12, 8 px (area), back up         pixelate 0.6-0.25 / 12-32 px
               (bilinear), as a small face is cropped
brightness     +10, 20, 30, 40, 50% of the range                   the same / +-15%
contrast       deviation from the mean x 0.4, 0.3, 0.2, 0.1, 0.05  the same / x 0.5-1.3
occlusion      a black square of 8, 12, 16, 20, 24 px (3-25% of    none / mean-gray erasing, p 0.4
               the face), centre uniform in [12, 36]
rotation       5, 10, 15, 20, 30 degrees, random direction,        none / +-10 (paper), +-15
               reflected borders
============== =================================================== ==============================
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ferkit.data import load_data, split_data
from ferkit.data.dataset import USAGES
from ferkit.data.ferplus import default_votes_path, left_out_counts, read_votes, with_ferplus_labels
from ferkit.errors import FerkitError
from ferkit.evaluate.metrics import compute_metrics
from ferkit.imageops import gaussian_blur, jpeg_round_trip, resize, rotation_matrix, warp_affine

SEVERITIES = 5
NOISE_SIGMA = (0.02, 0.04, 0.06, 0.10, 0.15)  # of the 0..255 range
BLUR_SIGMA = (0.5, 0.75, 1.0, 1.5, 2.0)  # pixels
JPEG_QUALITY = (25, 18, 15, 10, 7)
LOW_RES_SIDE = (32, 24, 16, 12, 8)  # pixels
BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)  # of the range, added
CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)  # deviation from the image mean, multiplied
OCCLUSION_SIDE = (8, 12, 16, 20, 24)  # pixels
ROTATION_DEGREES = (5.0, 10.0, 15.0, 20.0, 30.0)

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def _noise(faces: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    z = rng.standard_normal(faces.shape, dtype=np.float32)
    return faces + z * (NOISE_SIGMA[severity - 1] * 255)


def _blur(faces: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = BLUR_SIGMA[severity - 1]
    return np.stack([gaussian_blur(f, sigma) for f in faces])


def _jpeg(faces: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return np.stack([jpeg_round_trip(f, JPEG_QUALITY[severity - 1]) for f in faces])


def _low_resolution(faces: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    side = LOW_RES_SIDE[severity - 1]
    size = faces.shape[1:][::-1]
    return np.stack([resize(resize(f, (side, side), "area"), size, "linear") for f in faces])


def _brightness(faces: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return faces.astype(np.float32) + BRIGHTNESS[severity - 1] * 255


def _contrast(faces: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    x = faces.astype(np.float32)
    mean = x.mean(axis=(1, 2), keepdims=True)
    return (x - mean) * CONTRAST[severity - 1] + mean


def _occlusion(faces: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    h, w = faces.shape[1:]
    centres = rng.uniform(0.25, 0.75, (len(faces), 2)) * (h, w)  # the same centres at every severity
    side = OCCLUSION_SIDE[severity - 1]
    out = faces.copy()
    for f, (cy, cx) in zip(out, centres, strict=True):
        y0, x0 = int(round(cy - side / 2)), int(round(cx - side / 2))
        f[max(0, y0) : max(0, y0 + side), max(0, x0) : max(0, x0 + side)] = 0
    return out


def _rotation(faces: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    h, w = faces.shape[1:]
    signs = np.where(rng.random(len(faces)) < 0.5, -1.0, 1.0)  # the same direction at every severity
    angle = ROTATION_DEGREES[severity - 1]
    centre = ((w - 1) / 2, (h - 1) / 2)
    return np.stack([
        warp_affine(f, rotation_matrix(centre, s * angle), (w, h), "reflect101")
        for f, s in zip(faces, signs, strict=True)])


CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": _noise, "gaussian_blur": _blur, "jpeg": _jpeg, "low_resolution": _low_resolution,
    "brightness": _brightness, "contrast": _contrast, "occlusion": _occlusion, "rotation": _rotation,
}
PARAMETERS = {  # what each severity 1..5 means, for reports
    "gaussian_noise": ("sigma, % of range", [round(100 * s) for s in NOISE_SIGMA]),
    "gaussian_blur": ("sigma, px", list(BLUR_SIGMA)),
    "jpeg": ("quality", list(JPEG_QUALITY)),
    "low_resolution": ("side, px", list(LOW_RES_SIDE)),
    "brightness": ("added, % of range", [round(100 * b) for b in BRIGHTNESS]),
    "contrast": ("contrast factor", list(CONTRAST)),
    "occlusion": ("black square, px", list(OCCLUSION_SIDE)),
    "rotation": ("degrees", list(ROTATION_DEGREES)),
}


def corrupt(faces: np.ndarray, corruption: str, severity: int, seed: int = 0) -> np.ndarray:
    """``faces`` ((N, 48, 48) or one (48, 48), uint8) under ``corruption`` at ``severity`` 0..5.

    Severity 0 gives a copy of the faces. The result is uint8 of the same shape; the same faces,
    corruption and seed give the same result.
    """
    if corruption not in CORRUPTIONS:
        raise FerkitError(f"unknown corruption {corruption!r}; choose one of {', '.join(CORRUPTIONS)}")
    if not (isinstance(severity, int | np.integer) and 0 <= severity <= SEVERITIES):
        raise FerkitError(f"severity must be an integer in 0..{SEVERITIES}, not {severity!r}")
    faces = np.asarray(faces)
    if faces.dtype != np.uint8 or faces.ndim not in (2, 3):
        raise FerkitError(f"faces must be uint8 (N, H, W) or (H, W), not {faces.dtype} {faces.shape}")
    batch = np.ascontiguousarray(faces[None] if faces.ndim == 2 else faces)
    if severity == 0 or not len(batch):
        out = batch.copy()
    else:
        rng = np.random.default_rng([seed, list(CORRUPTIONS).index(corruption)])
        out = np.clip(np.rint(CORRUPTIONS[corruption](batch, int(severity), rng)), 0, 255).astype(np.uint8)
    return out[0] if faces.ndim == 2 else out


# Median brightness and contrast (each face's mean and standard deviation of pixel values) of
# FER2013's 28,709 Training faces.
TYPICAL_MEAN, TYPICAL_STD = 129.5, 53.7


def normalise_contrast(faces: np.ndarray, mean: float = TYPICAL_MEAN, std: float = TYPICAL_STD,
                       min_std: float = 1.0) -> np.ndarray:
    """Each face's pixel values shifted and scaled to ``mean`` and ``std`` (a flat face, std
    under ``min_std``, is scaled as if it had ``min_std``), as uint8: a test-time defence against
    brightness and contrast changes that needs no retraining (benchmarks/robustness.py
    ``--normalise``)."""
    x = np.asarray(faces, np.float32)
    axes = (-2, -1)
    centred = x - x.mean(axis=axes, keepdims=True)
    scale = std / np.maximum(x.std(axis=axes, keepdims=True), min_std)
    return np.clip(np.rint(centred * scale + mean), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- the benchmark


@dataclass
class LabelledFaces:
    """PrivateTest faces with both label sets: FER2013's for all, the FER+ majority for ``ferplus_rows``."""

    images: np.ndarray  # (N, 48, 48) uint8
    labels: np.ndarray  # (N,) FER2013's own labels
    ferplus_rows: np.ndarray  # indices into images of the faces FER+'s protocol keeps
    ferplus_labels: np.ndarray  # their majority labels
    data: str
    votes: str
    ferplus_left_out: dict[str, int]

    def subset(self, rows: np.ndarray) -> LabelledFaces:
        """The faces at ``rows`` (sorted, distinct), in that order."""
        rows = np.asarray(rows, np.int64)
        position = np.full(len(self.images), -1, np.int64)
        position[rows] = np.arange(len(rows))
        keep = position[self.ferplus_rows] >= 0
        return LabelledFaces(self.images[rows], self.labels[rows], position[self.ferplus_rows[keep]],
                             self.ferplus_labels[keep], self.data, self.votes, self.ferplus_left_out)

    def sample(self, count: int, seed: int = 0) -> LabelledFaces:
        """``count`` faces drawn without replacement, stratified by FER2013 label (each class in
        proportion, at least one face), in their original order; all of them if ``count`` is 0 or
        at least their number."""
        if not count or count >= len(self.images):
            return self
        rng = np.random.default_rng(seed)
        rows = []
        for label in np.unique(self.labels):
            members = np.flatnonzero(self.labels == label)
            take = max(1, round(len(members) * count / len(self.images)))
            rows.append(rng.choice(members, min(take, len(members)), replace=False))
        return self.subset(np.sort(np.concatenate(rows)))


def load_test_faces(data_path: str | os.PathLike,
                    votes_path: str | os.PathLike | None = None) -> LabelledFaces:
    """PrivateTest of the challenge CSV, with the FER+ majority labels joined as ``ferkit eval``
    joins them (:func:`ferkit.data.ferplus.with_ferplus_labels`; votes: beside the data if None)."""
    data = load_data(data_path)
    part = split_data(data, "canonical")["test"]
    votes_file = votes_path or default_votes_path(data_path)
    if not votes_file:
        raise FerkitError(f"no FER+ votes found beside {data_path}: name the votes file")
    votes = read_votes(votes_file)
    relabelled, _ = with_ferplus_labels(data, votes)
    row_of = {source: i for i, source in enumerate(part.sources)}
    test = USAGES.index("PrivateTest")
    mine = [(row_of[s], int(label)) for s, label, usage in
            zip(relabelled.sources, relabelled.labels, relabelled.usage, strict=True)
            if usage == test and s in row_of]
    rows = np.array([r for r, _ in mine], np.int64)
    labels = np.array([lab for _, lab in mine], np.int64)
    order = np.argsort(rows)
    return LabelledFaces(part.images, part.labels, rows[order], labels[order], str(data_path),
                         str(votes_file), left_out_counts(votes, data.usage == test))


def conditions() -> list[tuple[str, int]]:
    """("clean", 0), then every corruption at severities 1..5."""
    return [("clean", 0)] + [(c, s) for c in CORRUPTIONS for s in range(1, SEVERITIES + 1)]


def score(faces: LabelledFaces, predicted: np.ndarray) -> dict[str, dict[str, Any]]:
    """Accuracy and macro-F1 of predicted classes against both label sets."""
    out = {}
    for name, truth, pred in (("fer2013", faces.labels, predicted),
                              ("ferplus", faces.ferplus_labels, predicted[faces.ferplus_rows])):
        m = compute_metrics(truth, pred)
        out[name] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "n": m["n"]}
    return out


def summarise(scores: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """One classifier's scores per condition ("clean", "jpeg/3", ...) -> per label set: clean
    accuracy, accuracy per corruption and severity, each corruption's mean, the mean corruption
    accuracy over all 40 conditions and its drop from clean (both in accuracy, 0..1)."""
    out: dict[str, Any] = {}
    corrupted = [f"{c}/{s}" for c in CORRUPTIONS for s in range(1, SEVERITIES + 1)]
    for labels in ("fer2013", "ferplus"):
        clean = scores["clean"][labels]["accuracy"]
        per = {c: [scores[f"{c}/{s}"][labels]["accuracy"] for s in range(1, SEVERITIES + 1)]
               for c in CORRUPTIONS}
        mean = float(np.mean([a for accs in per.values() for a in accs]))
        out[labels] = {
            "clean": clean, "n": scores["clean"][labels]["n"], "per_severity": per,
            "per_corruption": {c: float(np.mean(a)) for c, a in per.items()},
            "worst_corruption": min(per, key=lambda c: np.mean(per[c])),
            "mean_corruption_accuracy": mean, "drop": clean - mean,
            "relative": mean / clean if clean else 0.0,
            "macro_f1_clean": scores["clean"][labels]["macro_f1"],
            "mean_corruption_macro_f1": float(np.mean([scores[k][labels]["macro_f1"] for k in corrupted])),
        }
    return out


def evaluate_robustness(
    classifiers: Mapping[str, Callable[[np.ndarray], np.ndarray]], faces: LabelledFaces, seed: int = 0,
    progress: Callable[[str], None] | None = None, full: LabelledFaces | None = None,
) -> dict[str, Any]:
    """Every classifier (faces -> predicted class indices) on every condition; the corrupted
    faces are made once per condition and shared. Returns per classifier :func:`summarise`'s
    dict plus its scores per condition and seconds spent classifying. With ``full`` (the set
    ``faces`` was sampled from) each classifier is also scored on all of it, clean: ``clean_all``."""
    scores: dict[str, dict[str, Any]] = {name: {} for name in classifiers}
    seconds = dict.fromkeys(classifiers, 0.0)

    def run(name: str, images: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        predicted = np.asarray(classifiers[name](images), np.int64)
        seconds[name] += time.perf_counter() - start
        return predicted

    clean_all = {}
    if full is not None and full is not faces:
        clean_all = {name: score(full, run(name, full.images)) for name in classifiers}
        if progress:
            progress(f"clean, all {len(full.images)} faces")
    for corruption, severity in conditions():
        key = "clean" if corruption == "clean" else f"{corruption}/{severity}"
        images = faces.images if corruption == "clean" else corrupt(faces.images, corruption, severity, seed)
        for name in classifiers:
            scores[name][key] = score(faces, run(name, images))
        if progress:
            progress(key)
    return {name: summarise(s) | {"clean_all": clean_all.get(name, s["clean"]), "scores": s,
                                  "seconds": round(seconds[name], 1)} for name, s in scores.items()}


def model_robustness(model: str | os.PathLike | None, data_path: str | os.PathLike,
                     votes_path: str | os.PathLike | None = None, seed: int = 0, count: int = 0,
                     threads: int | None = 1) -> dict[str, Any]:
    """One model reference through onnxruntime on PrivateTest (``count`` > 0: a stratified sample
    of that many faces, scored clean on all of them too); what a ``ferkit robustness`` command
    would call."""
    from ferkit.runtime.backends import classify
    from ferkit.runtime.loader import load_classifier

    runner, card = load_classifier(model, "onnx", threads)
    full = load_test_faces(data_path, votes_path)
    faces = full.sample(count, seed)
    result = evaluate_robustness({card["name"]: lambda x: classify(runner, x).argmax(1)}, faces, seed,
                                 full=full)
    return {"model": card["name"], "data": str(Path(data_path)), "seed": seed, "faces": len(faces.images),
            **result[card["name"]]}
