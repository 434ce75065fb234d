"""The service's batching across requests: answers do not depend on which requests share a forward
pass, /healthz stays answerable while the classifier is busy, and the stage timings are reported."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from ferkit.face import Box
from ferkit.imageio import load_image
from ferkit.inference.crop import crop_faces
from ferkit.inference.detect import make_detector, to_gray
from ferkit.serve.batching import MicroBatcher
from ferkit.serve.engine import STAGES, gray_for_crops


def jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def photo_variants(astronaut_png: Path) -> list[bytes]:
    """Four different photos of one face (sizes, a mirror, a turn): four different answers."""
    base = Image.open(astronaut_png).convert("RGB")
    return [jpeg(base), jpeg(base.resize((640, 480))), jpeg(base.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
            jpeg(base.rotate(12, expand=True, fillcolor=(128, 128, 128)))]


def faces_of(response: httpx.Response) -> list[dict]:
    assert response.status_code == 200, response.text
    return response.json()["faces"]


def assert_same_faces(got: list[dict], want: list[dict]) -> None:
    """Same boxes and labels; probabilities equal to float noise (a face's forward pass may run in a
    batch of other faces, whose kernels may sum in another order)."""
    assert [f["box"] for f in got] == [f["box"] for f in want]
    assert [f["label"] for f in got] == [f["label"] for f in want]
    for g, w in zip(got, want, strict=True):
        assert g["probabilities"] == pytest.approx(w["probabilities"], abs=1e-5)


def test_concurrent_requests_with_their_own_priors_get_their_sequential_answers(
        ferkit_server, astronaut_png: Path) -> None:
    photos = photo_variants(astronaut_png)
    priors = [None, "balanced", "natural", "happy=0.1,neutral=0.6"]
    cases = [(photo, prior) for photo in photos for prior in priors]

    def ask(client: httpx.Client, photo: bytes, prior: str | None) -> list[dict]:
        params = {"prior": prior} if prior else {}
        return faces_of(client.post("/v1/predict", content=photo, params=params,
                                    headers={"content-type": "image/jpeg"}))

    with httpx.Client(base_url=ferkit_server.url, timeout=120) as client:
        sequential = [ask(client, photo, prior) for photo, prior in cases]
    with ThreadPoolExecutor(len(cases)) as pool:  # one connection each, all in flight at once
        def ask_alone(case: tuple[bytes, str | None]) -> list[dict]:
            with httpx.Client(base_url=ferkit_server.url, timeout=120) as client:
                return ask(client, *case)
        concurrent = list(pool.map(ask_alone, cases * 2))
    for got, want in zip(concurrent, sequential * 2, strict=True):
        assert_same_faces(got, want)
    # the priors did move the answers: the same photo under two priors differs
    assert sequential[0][0]["probabilities"] != sequential[3][0]["probabilities"]


def test_answers_carry_server_timing_per_stage(ferkit_server, astronaut_png: Path) -> None:
    response = httpx.post(f"{ferkit_server.url}/v1/predict", content=astronaut_png.read_bytes(),
                          headers={"content-type": "image/png"}, timeout=120)
    assert response.status_code == 200
    timing = response.headers["server-timing"]
    for stage in STAGES:
        assert f"{stage};dur=" in timing
    assert 'batch;desc="faces=1 requests=' in timing


def test_healthz_answers_while_the_classifier_is_busy(astronaut_png: Path) -> None:
    from fastapi.testclient import TestClient

    from ferkit.serve.app import create_app

    app = create_app()
    with TestClient(app) as client:
        batcher = app.state.engine._batcher
        classify = batcher._classify
        entered, release = threading.Event(), threading.Event()

        def held(crops: np.ndarray) -> np.ndarray:
            entered.set()
            release.wait(60)
            return classify(crops)

        batcher._classify = held
        answers: list[httpx.Response] = []
        photo = astronaut_png.read_bytes()
        asking = threading.Thread(target=lambda: answers.append(client.post(
            "/v1/predict", content=photo, headers={"content-type": "image/png"})))
        asking.start()
        try:
            assert entered.wait(60), "the prediction never reached the classifier"
            start = time.perf_counter()
            health = client.get("/healthz")
            waited = time.perf_counter() - start
        finally:
            release.set()
            asking.join(60)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert waited < 5.0  # answered while the forward pass was still held
        assert answers and answers[0].status_code == 200 and answers[0].json()["faces"]


def test_gray_around_the_faces_gives_the_crops_of_the_whole_gray_image(astronaut_png: Path) -> None:
    detector = make_detector("yunet")
    rgb = load_image(astronaut_png)
    h, w = rgb.shape[:2]
    variants = [rgb, rgb[:, w // 3:], rgb[h // 3:, :], np.ascontiguousarray(np.rot90(rgb)),
                np.ascontiguousarray(rgb[::2, ::2])]
    checked = 0
    for image in variants:
        ih, iw = image.shape[:2]
        boxes = detector.detect(image)
        plain = [Box(b.x, b.y, b.w, b.h) for b in boxes]  # no landmarks: the square crop
        off = [Box(-20, -20, 60, 60), Box(iw - 10, ih - 10, 80, 50), Box(iw + 30, 5, 40, 40)]
        for group in (boxes, plain + off):
            want = crop_faces(to_gray(image), group)
            assert np.array_equal(crop_faces(gray_for_crops(image, group), group), want)
            checked += len(group)
    assert checked >= 20


def test_batcher_merges_requests_in_flight_into_one_pass() -> None:
    calls: list[int] = []

    def classify(crops: np.ndarray) -> np.ndarray:
        calls.append(len(crops))
        return np.repeat(crops.reshape(len(crops), -1)[:, :1].astype(np.float32), 7, axis=1)

    batcher = MicroBatcher(classify, more_coming=lambda: True, max_batch=64, max_wait_s=0.5)
    batcher.start()
    try:
        futures = [batcher.submit(np.full((n, 48, 48), n, np.uint8)) for n in (1, 2, 3)]
        results = [f.result(10) for f in futures]
    finally:
        batcher.close()
    assert calls == [6]
    for n, result in zip((1, 2, 3), results, strict=True):
        assert result.probabilities.shape == (n, 7) and (result.probabilities == n).all()
        assert (result.batch_faces, result.batch_requests) == (6, 3)


def test_batcher_runs_at_once_when_nothing_more_is_coming_and_reports_errors() -> None:
    def fail(crops: np.ndarray) -> np.ndarray:
        raise ValueError("broken graph")

    batcher = MicroBatcher(lambda crops: np.zeros((len(crops), 7), np.float32),
                           more_coming=lambda: False, max_wait_s=5.0)
    batcher.start()
    try:
        start = time.perf_counter()
        batcher.submit(np.zeros((1, 48, 48), np.uint8)).result(10)
        assert time.perf_counter() - start < 2.0  # did not wait out max_wait_s
        batcher._classify = fail
        with pytest.raises(ValueError, match="broken graph"):
            batcher.submit(np.zeros((1, 48, 48), np.uint8)).result(10)
    finally:
        batcher.close()


def test_batcher_never_overfills_a_pass() -> None:
    calls: list[int] = []

    def classify(crops: np.ndarray) -> np.ndarray:
        calls.append(len(crops))
        return np.zeros((len(crops), 7), np.float32)

    batcher = MicroBatcher(classify, more_coming=lambda: True, max_batch=8, max_wait_s=0.3)
    batcher.start()
    try:
        futures = [batcher.submit(np.zeros((n, 48, 48), np.uint8)) for n in (5, 2, 4, 3)]
        assert [f.result(10).probabilities.shape[0] for f in futures] == [5, 2, 4, 3]
    finally:
        batcher.close()
    assert calls == [7, 7]
