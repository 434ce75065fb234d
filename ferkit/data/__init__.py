"""Data: loaders for the challenge CSV, FER+ votes, image folders and labelled photos, split
protocols, and the summary of a data set; faces as numpy arrays (no PyTorch)."""

from __future__ import annotations

from pathlib import Path

from ferkit.data.challenge_csv import load_challenge_csv
from ferkit.data.dataset import OTHER, USAGES, FerData
from ferkit.data.folders import (
    is_fer_layout,
    load_class_folders,
    load_fer_folders,
    load_fer_tarball,
)
from ferkit.data.labelled_photos import is_labelled_photos, load_labelled_photos
from ferkit.data.splits import PROTOCOLS, SPLITS, split_data
from ferkit.errors import DataError

__all__ = ["FerData", "USAGES", "OTHER", "PROTOCOLS", "SPLITS", "load_data", "split_data",
           "is_labelled_photos", "load_labelled_photos"]


def load_data(path: str | Path) -> FerData:
    """Load any supported data set, choosing the loader from what ``path`` is."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    name = path.name.lower()
    if path.is_file():
        if name.endswith((".csv", ".csv.gz")):
            return load_challenge_csv(path)
        if name.endswith((".tar", ".tar.gz", ".tgz")):
            return load_fer_tarball(path)
        raise DataError(f"{path}: unsupported data file (expected .csv, .csv.gz or .tar.gz)")
    if is_labelled_photos(path):  # labels.csv + images/: whole photos, scored by `ferkit eval`
        raise DataError(f"{path}: labelled photos (labels.csv) are read by `ferkit eval` only, not as "
                        "a data set of face crops")
    if is_fer_layout(path):
        return load_fer_folders(path)
    return load_class_folders(path)
