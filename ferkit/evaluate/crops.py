"""``ferkit eval`` on a data set of 48x48 face crops: the FER2013 challenge CSV (also scored
against the FER+ majority labels), its image folders or tarball, or class folders."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ferkit.data import OTHER, load_data, split_data
from ferkit.data.ferplus import default_votes_path, left_out_counts, read_votes, with_ferplus_labels
from ferkit.data.summary import leaked_mask
from ferkit.errors import DataError, FerkitError
from ferkit.evaluate.calibration import calibration_report
from ferkit.evaluate.metrics import compute_metrics
from ferkit.runtime.backends import classify
from ferkit.runtime.loader import load_classifier, temperature_of, uncertain_below


def evaluate_model(
    model: str | os.PathLike | None, data_path: str, split: str = "test", protocol: str = "canonical",
    split_seed: int = 0, tta: bool = False, exclude_train_duplicates: bool = False,
    ferplus: str | None = None, backend: str = "onnx", calibrated: bool = True, prior: str = "auto",
    calibration: str = "crops",
) -> dict[str, Any]:
    """Metrics of a model reference on a data set's split, through ``backend``.

    A folder of class sub-folders has no splits and is evaluated as a whole. With
    ``exclude_train_duplicates`` test images that are pixel copies of Training images are dropped.
    On the challenge CSV under the canonical protocol the split is also scored against the FER+
    majority labels (``ferplus``: the votes file; None looks beside the data, "" skips it), under
    the key ``ferplus``. Both carry ``calibration``: expected calibration error (15 bins), NLL,
    reliability bins and what the card's "uncertain" flag marks; ``calibrated=False`` measures the
    network's own probabilities, without the card's temperature.
    """
    runner, card = load_classifier(model, backend, calibrated=calibrated, prior=prior, faces=calibration)
    threshold = uncertain_below(card, calibration) if calibrated else 0.0
    data = load_data(data_path)
    if (data.usage == OTHER).all():
        part, split, train = data, "all", None
    else:
        splits = split_data(data, protocol, split_seed)
        part, train = splits[split], splits["train"]
    if exclude_train_duplicates:
        if train is None or split == "train":
            raise FerkitError("--exclude-train-duplicates needs a val or test split of a data set with "
                              "a training split")
        part = part.subset(np.flatnonzero(~leaked_mask(train, part)))
    if not len(part):  # not "n=0 accuracy 0.000": there is nothing to score
        raise DataError(f"{data_path}: the {split} split of the {protocol} protocol has no images"
                        + (" left after dropping copies of training images" if exclude_train_duplicates
                           else ""))
    probs = classify(runner, part.images, tta)
    predicted = probs.argmax(1)
    metrics = compute_metrics(part.labels, predicted)
    metrics["calibration"] = calibration_report(probs, part.labels, threshold)
    votes_path = default_votes_path(data_path) if ferplus is None else ferplus
    if votes_path and protocol == "canonical" and split != "all":
        votes = read_votes(votes_path)
        # The same images as ``part``, found by their source row, relabelled by the FER+ majority.
        kept, majority = _ferplus_majority(data, part, votes)
        split_rows = np.isin(data.sources, part.sources)
        metrics["ferplus"] = compute_metrics(majority, predicted[kept]) | {
            "calibration": calibration_report(probs[kept], majority, threshold),
            "votes": str(votes_path), "left_out": left_out_counts(votes, split_rows),
            "agreement_with_fer2013": float((majority == part.labels[kept]).mean()) if len(kept) else 0.0,
        }
    return metrics | {"model": card["name"], "backend": backend, "data": str(data_path), "split": split,
                      "protocol": protocol, "tta": tta, "calibrated": calibrated,
                      "temperature": temperature_of(card, calibration) if calibrated else 1.0,
                      "calibration_used": card["calibration_used"]["faces"]}


def _ferplus_majority(data: Any, part: Any, votes: Any) -> tuple[np.ndarray, np.ndarray]:
    """(indices into ``part``, FER+ majority labels) of the part's images FER+ keeps."""
    kept, majority, _ = _ferplus_votes(data, part, votes)
    return kept, majority


def _ferplus_votes(data: Any, part: Any, votes: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices into ``part``, FER+ majority labels, (N, 7) vote shares) of the images FER+ keeps."""
    relabelled, _ = with_ferplus_labels(data, votes)
    row_of = {source: i for i, source in enumerate(relabelled.sources)}
    mine = [(row_of[s], k) for k, s in enumerate(part.sources) if s in row_of]
    rows = np.array([r for r, _ in mine], dtype=np.int64)
    kept = np.array([k for _, k in mine], dtype=np.int64)
    return kept, relabelled.labels[rows], relabelled.targets[rows]


def calibrate_model(model: str | os.PathLike | None, data_path: str, ferplus: str | None = None,
                    backend: str = "onnx",
                    degrade_photo: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, Any]:
    """Fit the temperature and the "uncertain" threshold on PublicTest against the FER+ majority
    (the better ground truth), and report calibration before and after on both test splits and
    both label sets; with ``degrade_photo`` (faces -> faces as photos degrade them, e.g.
    :func:`ferkit.train.augment.photo_degraded`) also the calibration for faces from photos.
    Nothing is written here (``ferkit calibrate --write`` stores the result)."""
    from ferkit.evaluate.calibration import (
        ece_bootstrap_sd,
        fit_temperature,
        lowest_ece_temperature,
        uncertain_threshold,
    )
    from ferkit.runtime.backends import with_temperature

    # The temperature is fitted on the network's own (natural) probabilities; a prior shifts them after.
    runner, card = load_classifier(model, backend, calibrated=False, prior="natural")
    data = load_data(data_path)
    if (data.usage == OTHER).all():
        raise DataError(f"{data_path}: calibration needs the challenge's PublicTest and PrivateTest splits")
    votes_path = default_votes_path(data_path) if ferplus is None else ferplus
    if not votes_path:
        raise FerkitError("calibration needs the FER+ votes (--ferplus VOTES)")
    votes = read_votes(votes_path)
    splits = split_data(data, "canonical", 0)
    probs = {name: classify(runner, splits[name].images) for name in ("val", "test")}
    kept, majority = _ferplus_majority(data, splits["val"], votes)
    temperature = fit_temperature(probs["val"][kept], majority)
    threshold = uncertain_threshold(with_temperature(probs["val"][kept], temperature), majority)
    report: dict[str, Any] = {"model": card["name"], "temperature": temperature, "uncertain_below": threshold,
                              "fitted_on": "FER+ PublicTest, majority labels", "votes": str(votes_path)}
    for name, split in (("PublicTest", "val"), ("PrivateTest", "test")):
        part = splits[split]
        kept, majority = _ferplus_majority(data, part, votes)
        for labels_name, p, y in (("ferplus", probs[split][kept], majority),
                                  ("fer2013", probs[split], part.labels)):
            t_best, ece_best = lowest_ece_temperature(p, y)
            scaled = with_temperature(p, temperature)
            report[f"{name}/{labels_name}"] = {
                "before": calibration_report(p, y),
                "after": calibration_report(scaled, y, threshold) | {"ece_sd": ece_bootstrap_sd(scaled, y)},
                "lowest_ece_any_temperature": {"temperature": t_best, "ece": ece_best}}
    if degrade_photo is not None:
        report["photos"] = _photo_calibration(runner, data, splits, votes, degrade_photo)
    return report


PHOTO_FIT = ("FER+ PublicTest under the photo degradations, against one labeller's vote (the vote "
             "shares)")


def _photo_calibration(runner: Any, data: Any, splits: dict[str, Any], votes: Any,
                       degrade: Callable[[np.ndarray], np.ndarray]) -> dict[str, Any]:
    """The temperature and "uncertain" threshold for faces cropped from photos.

    A photo's face is smaller, blurrier and more compressed than FER2013's, and its label (in
    ExpW-dev, in a user's study) is one person's call, not a ten-labeller majority. So the fit
    degrades PublicTest as the training's photo degradations do, and asks how often one labeller
    drawn at random would agree with the top label (the vote share it got). ExpW-dev measures the
    result; it is never part of the fit."""
    from ferkit.evaluate.calibration import (
        ece_bootstrap_sd,
        fit_temperature,
        uncertain_threshold,
    )
    from ferkit.runtime.backends import with_temperature

    out: dict[str, Any] = {"fitted_on": PHOTO_FIT}
    for name, split in (("PublicTest", "val"), ("PrivateTest", "test")):
        part = splits[split]
        kept, majority, shares = _ferplus_votes(data, part, votes)
        probs = classify(runner, degrade(part.images[kept]))
        if split == "val":
            out["temperature"] = fit_temperature(probs, shares)
            out["uncertain_below"] = uncertain_threshold(with_temperature(probs, out["temperature"]), shares)
        scaled = with_temperature(probs, out["temperature"])
        out[f"{name}/degraded"] = {
            "one labeller": {"before": calibration_report(probs, shares),
                             "after": calibration_report(scaled, shares, out["uncertain_below"])
                             | {"ece_sd": ece_bootstrap_sd(scaled, shares)}},
            "majority": {"after": calibration_report(scaled, majority, out["uncertain_below"])}}
    return out
