"""Class priors move decisions the way Bayes' rule says, in every backend and entry point; per-class
metrics agree with a hand count."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_ferkit

from ferkit.errors import FerkitError
from ferkit.face import CLASSES
from ferkit.runtime.prior import parse_prior, prior_weights, shift


@pytest.fixture(scope="module")
def private_faces(fer_csv):
    from ferkit.data.challenge_csv import load_challenge_csv

    return load_challenge_csv(fer_csv).images[-600:]  # PrivateTest's last faces


def counts(probs: np.ndarray) -> dict[str, int]:
    return {c: int(n) for c, n in zip(CLASSES, np.bincount(probs.argmax(1), minlength=7), strict=True)}


def test_balanced_prior_says_rare_expressions_more_often_and_common_ones_less(private_faces):
    from ferkit.inference import Recognizer

    natural = counts(Recognizer(detector=None, prior="natural").classify(private_faces))
    balanced = counts(Recognizer(detector=None).classify(private_faces))  # the default: auto
    # FER+ training: 1.6% disgust, 3.6% fear, 32.8% neutral. An equal prior raises the rare ones.
    assert balanced["disgust"] + balanced["fear"] > natural["disgust"] + natural["fear"]
    assert balanced["neutral"] < natural["neutral"]
    # A user's prior that expects happy faces gives more happy decisions than the natural one.
    happy = counts(Recognizer(detector=None, prior="happy=0.8").classify(private_faces))
    assert happy["happy"] > natural["happy"] and happy["neutral"] < natural["neutral"]


def test_the_prior_applies_in_both_backends_after_the_temperature(private_faces):
    pytest.importorskip("torch")
    from ferkit.inference import Recognizer
    from ferkit.runtime.backends import with_temperature

    faces = private_faces[:200]
    onnx, torch_ = (Recognizer(detector=None, backend=b, prior="balanced") for b in ("onnx", "torch"))
    assert np.abs(onnx.classify(faces) - torch_.classify(faces)).max() < 1e-4
    raw = Recognizer(detector=None, calibrated=False, prior="natural")
    expected = shift(with_temperature(raw.classify(faces), onnx.card["calibration"]["temperature"]),
                     prior_weights(onnx.card, "balanced"))
    assert np.allclose(onnx.classify(faces), expected, atol=1e-5)
    assert onnx.prior == "balanced" and Recognizer(detector=None, prior="natural").prior == "natural"
    assert Recognizer(detector=None).prior == "balanced"  # auto: the card records its prior


def test_user_priors_are_parsed_or_refused_in_one_line():
    prior = parse_prior("happy=0.5, neutral=0.3")
    assert prior[CLASSES.index("happy")] == pytest.approx(0.5)
    assert prior[CLASSES.index("angry")] == pytest.approx(0.2 / 5)  # the rest, shared equally
    for bad in ("sleepy=0.2", "happy=lots", "happy=2", ""):
        with pytest.raises(FerkitError):
            parse_prior(bad)


def test_cli_prior_changes_eval_and_refuses_a_bad_value(fer_slice_csv):
    scores = {}
    for prior in ("natural", "balanced"):
        result = run_ferkit("eval", "--data", fer_slice_csv, "--json", "--prior", prior, "--ferplus", "")
        assert result.returncode == 0, result.stderr
        scores[prior] = json.loads(result.stdout)
    assert scores["natural"]["confusion_matrix"] != scores["balanced"]["confusion_matrix"]
    result = run_ferkit("predict", "--prior", "sleepy=1", "x.png")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "prior 'sleepy=1'" in result.stderr


def test_per_class_metrics_agree_with_a_hand_count():
    from ferkit.evaluate.metrics import compute_metrics

    # angry x3 (2 right, 1 called happy), happy x2 (both right), sad x1 (called happy); no other class.
    y_true = np.array([0, 0, 0, 3, 3, 4])
    y_pred = np.array([0, 0, 3, 3, 3, 3])
    m = compute_metrics(y_true, y_pred)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["angry"] == {"precision": 1.0, "recall": pytest.approx(2 / 3),
                                       "f1": pytest.approx(0.8), "support": 3}
    assert m["per_class"]["happy"]["precision"] == pytest.approx(2 / 4)
    assert m["per_class"]["happy"]["recall"] == 1.0
    assert m["per_class"]["sad"]["recall"] == 0.0 and m["per_class"]["sad"]["f1"] == 0.0
    # Classes absent from the labels count in neither macro-F1 nor balanced accuracy.
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 0.0) / 3)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert (m["worst_class"], m["worst_recall"]) == ("sad", 0.0)
    assert m["confusion_matrix"][0][:4] == [2, 0, 0, 1]


def test_eval_writes_a_confusion_figure_per_label_set(fer_slice_csv, tmp_path):
    out = tmp_path / "figs"
    result = run_ferkit("eval", "--data", fer_slice_csv, "--figures", out, "--ferplus", "")
    assert result.returncode == 0, result.stderr
    assert "balanced accuracy" in result.stdout and "worst recall" in result.stdout
    assert (out / "confusion_fer2013.png").stat().st_size > 5000
