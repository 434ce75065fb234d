"""``ferkit eval`` on a data set of 48x48 face crops: the FER2013 challenge CSV (also scored
against the FER+ majority labels), its image folders or tarball, or class folders."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ferkit.data import OTHER, load_data, split_data
from ferkit.data.ferplus import default_votes_path, left_out_counts, read_votes, with_ferplus_labels
from ferkit.data.summary import leaked_mask
from ferkit.errors import DataError, FerkitError
from ferkit.evaluate.metrics import compute_metrics
from ferkit.runtime.backends import classify
from ferkit.runtime.loader import load_classifier


def evaluate_model(
    model: str | os.PathLike | None, data_path: str, split: str = "test", protocol: str = "canonical",
    split_seed: int = 0, tta: bool = False, exclude_train_duplicates: bool = False,
    ferplus: str | None = None, backend: str = "onnx",
) -> dict[str, Any]:
    """Metrics of a model reference on a data set's split, through ``backend``.

    A folder of class sub-folders has no splits and is evaluated as a whole. With
    ``exclude_train_duplicates`` test images that are pixel copies of Training images are dropped.
    On the challenge CSV under the canonical protocol the split is also scored against the FER+
    majority labels (``ferplus``: the votes file; None looks beside the data, "" skips it), under
    the key ``ferplus``.
    """
    runner, card = load_classifier(model, backend)
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
    predicted = classify(runner, part.images, tta).argmax(1)
    metrics = compute_metrics(part.labels, predicted)
    votes_path = default_votes_path(data_path) if ferplus is None else ferplus
    if votes_path and protocol == "canonical" and split != "all":
        votes = read_votes(votes_path)
        relabelled, _ = with_ferplus_labels(data, votes)
        # The same images as ``part``, found by their source row, relabelled by the FER+ majority.
        row_of = {source: i for i, source in enumerate(relabelled.sources)}
        mine = [(row_of[s], k) for k, s in enumerate(part.sources) if s in row_of]
        rows = np.array([r for r, _ in mine], dtype=np.int64)
        kept = np.array([k for _, k in mine], dtype=np.int64)
        split_rows = np.isin(data.sources, part.sources)
        metrics["ferplus"] = compute_metrics(relabelled.labels[rows], predicted[kept]) | {
            "votes": str(votes_path), "left_out": left_out_counts(votes, split_rows),
            "agreement_with_fer2013": float((relabelled.labels[rows] == part.labels[kept]).mean())
            if len(rows) else 0.0,
        }
    return metrics | {"model": card["name"], "backend": backend, "data": str(data_path), "split": split,
                      "protocol": protocol, "tta": tta}
