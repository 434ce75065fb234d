"""The corruptions of the robustness benchmark (ferkit/evaluate/robustness.py) on real FER2013
faces: severity 0 is the clean face, each severity changes the faces more than the one before,
the faces stay 48x48 uint8, and a seed gives the same faces every time."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_file

from ferkit.errors import FerkitError
from ferkit.evaluate.robustness import CORRUPTIONS, SEVERITIES, TYPICAL_MEAN, corrupt, normalise_contrast

FACES = 12
RANDOM = ("gaussian_noise", "occlusion", "rotation")  # the corruptions that draw random numbers


@pytest.fixture(scope="module")
def faces(shared: Path) -> np.ndarray:
    """The first real faces of the challenge CSV, skipping near-blank ones."""
    out = []
    with gzip.open(shared_file(shared, "fer2013", "fer2013.csv.gz"), "rt") as f:
        f.readline()
        for line in f:
            face = np.array(line.split(",")[1].split(), dtype=np.uint8).reshape(48, 48)
            if face.std() > 20:
                out.append(face)
            if len(out) == FACES:
                break
    return np.stack(out)


def change(faces: np.ndarray, corrupted: np.ndarray) -> float:
    return float(np.abs(corrupted.astype(np.int16) - faces).mean())


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_severity_zero_is_the_clean_face(faces: np.ndarray, name: str) -> None:
    before = faces.copy()
    clean = corrupt(faces, name, 0)
    assert np.array_equal(clean, faces) and clean is not faces
    for severity in range(SEVERITIES + 1):
        corrupt(faces, name, severity)
    assert np.array_equal(faces, before)  # the input is never changed


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_higher_severity_changes_faces_more(faces: np.ndarray, name: str) -> None:
    changes = []
    for severity in range(SEVERITIES + 1):
        out = corrupt(faces, name, severity, seed=3)
        assert out.dtype == np.uint8 and out.shape == faces.shape == (FACES, 48, 48)
        changes.append(change(faces, out))
    assert changes[0] == 0
    assert all(b > a for a, b in zip(changes, changes[1:])), changes
    # One face alone (48, 48) is corrupted like a batch of one.
    one = corrupt(faces[0], name, 3, seed=3)
    assert one.shape == (48, 48) and one.dtype == np.uint8


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_same_seed_same_faces(faces: np.ndarray, name: str) -> None:
    first, again = corrupt(faces, name, 4, seed=7), corrupt(faces, name, 4, seed=7)
    assert np.array_equal(first, again)
    other = corrupt(faces, name, 4, seed=8)
    assert np.array_equal(first, other) == (name not in RANDOM)


def test_bad_requests_are_one_line_errors(faces: np.ndarray) -> None:
    with pytest.raises(FerkitError, match="unknown corruption 'fog'"):
        corrupt(faces, "fog", 1)
    for severity in (-1, SEVERITIES + 1, 1.5):
        with pytest.raises(FerkitError, match="severity must be an integer"):
            corrupt(faces, "jpeg", severity)
    with pytest.raises(FerkitError, match="must be uint8"):
        corrupt(faces.astype(np.float32), "jpeg", 1)


def test_normalised_contrast_undoes_a_contrast_change(faces: np.ndarray) -> None:
    clean = normalise_contrast(faces)
    assert clean.dtype == np.uint8 and clean.shape == faces.shape
    assert abs(float(clean.mean()) - TYPICAL_MEAN) < 3
    flat = corrupt(faces, "contrast", 3)
    assert change(clean, normalise_contrast(flat)) < change(faces, flat) / 3
