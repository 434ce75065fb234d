"""Calibrated probabilities: ECE, the temperature fit, and the card's temperature and "uncertain"
threshold applied in every backend and every output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_ferkit

from ferkit.errors import FerkitError
from ferkit.evaluate.calibration import (
    ece_bootstrap_sd,
    expected_calibration_error,
    fit_temperature,
    lowest_ece_temperature,
    uncertain_threshold,
)
from ferkit.inference.types import face_from_probs
from ferkit.models.store import WEIGHTS_DIR, read_card
from ferkit.runtime.backends import with_temperature


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _sampled(temperature: float, n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities softmax(z) of a model whose true class probabilities are softmax(z / T)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.5, (n, 7))
    truth = _softmax(logits / temperature)
    labels = np.array([rng.choice(7, p=p) for p in truth])
    return _softmax(logits), labels


def test_temperature_is_the_same_as_dividing_the_logits() -> None:
    logits = np.random.default_rng(1).normal(0, 3, (50, 7))
    probs = _softmax(logits)
    assert np.allclose(with_temperature(probs, 1.7), _softmax(logits / 1.7), atol=1e-6)
    assert (with_temperature(probs, 0.6).argmax(1) == probs.argmax(1)).all()
    assert with_temperature(probs, 1.0) is probs


def test_the_fit_recovers_a_known_temperature_and_removes_the_calibration_error() -> None:
    probs, labels = _sampled(temperature=1.8)
    assert expected_calibration_error(probs, labels) > 0.08  # overconfident as made
    t = fit_temperature(probs, labels)
    assert t == pytest.approx(1.8, rel=0.06)
    assert expected_calibration_error(with_temperature(probs, t), labels) < 0.015
    best_t, best_ece = lowest_ece_temperature(probs, labels)  # the hindsight diagnostic agrees
    assert best_t == pytest.approx(1.8, rel=0.1)
    assert best_ece <= expected_calibration_error(with_temperature(probs, t), labels) + 0.003


def test_the_bootstrap_spread_of_ece_shrinks_with_more_faces() -> None:
    probs, labels = _sampled(temperature=1.0)
    small, large = ece_bootstrap_sd(probs[:2000], labels[:2000]), ece_bootstrap_sd(probs, labels)
    assert 0 < large < small  # 10x the faces: about a third of the spread
    assert large == pytest.approx(small / 10 ** 0.5, rel=0.5)


def test_the_uncertain_threshold_marks_faces_more_often_wrong_than_right() -> None:
    probs, labels = _sampled(temperature=1.0)  # calibrated: accuracy at confidence p is about p
    t = uncertain_threshold(probs, labels)
    flagged = probs.max(1) < t
    assert 0.3 < t < 0.9 and flagged.any()
    assert (probs.argmax(1) == labels)[flagged].mean() <= 0.5
    assert face_from_probs([0.4, 0.3, 0.3, 0, 0, 0, 0], None, t).uncertain
    assert not face_from_probs([0.95, 0.05, 0, 0, 0, 0, 0], None, t).uncertain


@pytest.mark.parametrize("name", ["default", "large", "paper", "paper-wide"])
def test_every_shipped_card_holds_a_calibration_fitted_on_publictest(name: str) -> None:
    calibration = read_card(WEIGHTS_DIR / f"{name}.safetensors")["calibration"]
    assert 0.25 < calibration["temperature"] < 8 and calibration["temperature"] != 1.0
    assert 0 < calibration["uncertain_below"] < 1
    assert calibration["fitted_on"] == "FER+ PublicTest, majority labels"
    photos = calibration["photos"]  # faces from photos: degraded faces, one labeller's vote
    assert photos["temperature"] > calibration["temperature"] and 0 < photos["uncertain_below"] < 1
    assert photos["fitted_on"].startswith("FER+ PublicTest under the photo degradations")


def test_vote_shares_score_agreement_with_one_labeller() -> None:
    probs = np.array([[0.7, 0.3, 0, 0, 0, 0, 0], [0.2, 0.8, 0, 0, 0, 0, 0]])
    shares = np.array([[0.6, 0.4, 0, 0, 0, 0, 0], [0.1, 0.9, 0, 0, 0, 0, 0]])
    # Bin of 0.7 holds one face whose top class got 60% of the votes; bin of 0.8, one with 90%.
    assert expected_calibration_error(probs, shares) == pytest.approx((0.1 + 0.1) / 2)
    assert expected_calibration_error(probs, shares.argmax(1)) == pytest.approx((0.3 + 0.2) / 2)
    # A sharp model of soft truths is over-confident: the fit against the shares flattens it.
    logits = np.random.default_rng(3).normal(0, 2, (4000, 7))
    truth = _softmax(logits)
    assert fit_temperature(_softmax(logits * 2), truth) == pytest.approx(2.0, rel=0.02)


def test_faces_from_photos_get_the_photo_calibration_in_both_backends(astronaut_png: Path) -> None:
    pytest.importorskip("torch")
    from ferkit.imageio import load_image
    from ferkit.inference import Recognizer

    rgb = load_image(astronaut_png)
    raw = Recognizer("default", calibrated=False, prior="natural")
    _, crops = raw.locate(rgb)
    assert len(crops) == 1
    photos = raw.card["calibration"]["photos"]
    for backend in ("onnx", "torch"):
        found = Recognizer("default", backend=backend, prior="natural")  # a detector: photos
        assert found.calibration == "photos" and found.uncertain_below == photos["uncertain_below"]
        expected = with_temperature(raw.classify(crops), photos["temperature"])
        assert np.allclose(found.classify(crops), expected, atol=1e-4)
        crop_only = Recognizer("default", detector=None, backend=backend, prior="natural")
        assert crop_only.calibration == "crops"
        assert np.allclose(crop_only.classify(crops),
                           with_temperature(raw.classify(crops), raw.card["calibration"]["temperature"]),
                           atol=1e-4)
    with pytest.raises(FerkitError, match="unknown calibration"):
        Recognizer("default", calibration="studio")


def test_the_temperature_applies_in_both_backends_and_uncalibrated_is_the_network_itself(fer_csv) -> None:
    pytest.importorskip("torch")
    from ferkit.data.challenge_csv import load_challenge_csv
    from ferkit.inference import Recognizer

    faces = load_challenge_csv(fer_csv).images[-200:]  # PrivateTest's last faces
    onnx, torch_ = (Recognizer("default", detector=None, backend=b, prior="natural")
                    for b in ("onnx", "torch"))
    raw = Recognizer("default", detector=None, calibrated=False, prior="natural")
    assert np.abs(onnx.classify(faces) - torch_.classify(faces)).max() < 1e-4
    temperature = onnx.card["calibration"]["temperature"]
    assert np.allclose(onnx.classify(faces), with_temperature(raw.classify(faces), temperature), atol=1e-5)
    # Uncertain faces exist among them and are flagged in the predictions.
    below = onnx.uncertain_below
    predictions = onnx.predict_batch(list(faces), detect=False)
    flags = [p.faces[0].uncertain for p in predictions]
    assert flags == [p.faces[0].score < below for p in predictions] and any(flags) and not all(flags)


def test_cli_json_and_csv_carry_the_flag(astronaut_png: Path) -> None:
    run = run_ferkit("predict", str(astronaut_png), "--json")
    assert json.loads(run.stdout)["faces"][0]["uncertain"] is False  # a broad smile
    csv_run = run_ferkit("predict", str(astronaut_png), "--csv")
    header, row = csv_run.stdout.splitlines()[:2]
    assert dict(zip(header.split(","), row.split(",")))["uncertain"] == "0"


def test_calibrate_writes_the_card_and_the_model_then_uses_it(fer_csv: Path, tmp_path: Path) -> None:
    for suffix in (".safetensors", ".json"):
        shutil.copy(WEIGHTS_DIR / f"paper{suffix}", tmp_path / f"mine{suffix}")
    card = json.loads((tmp_path / "mine.json").read_text())
    card.pop("calibration", None)
    (tmp_path / "mine.json").write_text(json.dumps(card))
    weights = str(tmp_path / "mine.safetensors")
    run = run_ferkit("calibrate", "--model", weights, "--data", str(fer_csv), "--write", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    after = report["PrivateTest/ferplus"]["after"]["ece"]
    assert after < report["PrivateTest/ferplus"]["before"]["ece"]
    assert report["PrivateTest/ferplus"]["lowest_ece_any_temperature"]["ece"] <= after + 0.003
    written = json.loads((tmp_path / "mine.json").read_text())["calibration"]
    assert written["temperature"] == report["temperature"]
    # Faces from photos: fitted on degraded PublicTest against one labeller's vote, and on the
    # degraded PrivateTest faces (not fitted on) the gap to that agreement shrinks.
    photos = report["photos"]
    assert written["photos"] == {k: photos[k] for k in ("temperature", "uncertain_below", "fitted_on")}
    one = photos["PrivateTest/degraded"]["one labeller"]
    assert one["after"]["ece"] < one["before"]["ece"] and one["after"]["ece"] < 0.05
    # The temperature is fitted on the natural probabilities, before any prior shift.
    evaluated = json.loads(run_ferkit("eval", "--model", weights, "--data", str(fer_csv), "--json",
                                      "--prior", "natural").stdout)
    assert evaluated["ferplus"]["calibration"]["ece"] == pytest.approx(after, abs=1e-4)
    graph_only = run_ferkit("calibrate", "--model", str(WEIGHTS_DIR / "paper.onnx"), "--data", str(fer_csv),
                            "--write")
    assert graph_only.returncode != 0 and "export again" in graph_only.stderr


def test_eval_scores_with_the_calibration_asked_for(fer_slice_csv: Path) -> None:
    card = read_card(WEIGHTS_DIR / "default.safetensors")["calibration"]
    for asked, temperature in (("auto", card["temperature"]), ("photos", card["photos"]["temperature"])):
        run = run_ferkit("eval", "--data", str(fer_slice_csv), "--calibration", asked, "--json")
        m = json.loads(run.stdout)
        assert m["temperature"] == temperature and m["calibration_used"] == asked.replace("auto", "crops")
