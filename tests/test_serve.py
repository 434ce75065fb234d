"""The REST API over real HTTP: ``python -m ferkit serve`` in a subprocess, driven with httpx."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import REPO
from PIL import Image
from support.malformed import bomb_jpeg, bomb_png, malformed_requests, multipart, sample_photos

from ferkit.face import CLASSES

MAX_UPLOAD = 10 * 1024 * 1024  # the server's default --max-upload-mb 10
FACE_KEYS = {"box", "label", "score", "uncertain", "probabilities", "landmarks", "detection_score"}


@pytest.fixture(scope="module")
def client(ferkit_server) -> httpx.Client:
    with httpx.Client(base_url=ferkit_server.url, timeout=120) as c:
        yield c


def blank_png(size: tuple[int, int] = (400, 300)) -> bytes:
    """A plain gray picture: certainly no face in it."""
    buf = io.BytesIO()
    Image.new("RGB", size, (128, 128, 128)).save(buf, "PNG")
    return buf.getvalue()


def assert_json_error(response: httpx.Response, *statuses: int) -> str:
    assert response.status_code in statuses, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    detail = response.json()["detail"]
    assert detail
    return str(detail)


def assert_prediction_shape(result: dict) -> None:
    assert {"source", "width", "height", "faces", "note", "model"} <= set(result)
    for face in result["faces"]:
        assert FACE_KEYS <= set(face)
        assert list(face["probabilities"]) == list(CLASSES)
        assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
        assert face["label"] == max(face["probabilities"], key=face["probabilities"].get)


# ---------------------------------------------------------------- service endpoints

def test_healthz(client: httpx.Client) -> None:
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["model"]


def test_models_lists_shipped_models_with_params_and_accuracy(client: httpx.Client) -> None:
    body = client.get("/v1/models").json()
    names = [m["name"] for m in body["models"]]
    assert body["served"] in names and "paper" in names
    paper = body["models"][names.index("paper")]
    assert paper["params"] > 0 and 0 < paper["fer2013_test_accuracy"] <= 1


def test_models_carry_the_headline_figures_of_each_card(client: httpx.Client) -> None:
    """What each model is for and its figures, exactly as its card (ferkit/weights/NAME.json) has them."""
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    for name in ("default", "paper"):
        card = json.loads((REPO / "ferkit" / "weights" / f"{name}.json").read_text())
        scores, speed = card["figures"]["by_prior"]["balanced"], card["figures"]["speed"]
        got = models[name]
        assert got["purpose"] == card["purpose"] and got["params"] == card["metrics"]["params"]
        assert got["prior"] == "balanced"  # what --prior auto gives, so what a user gets
        for key in ("ferplus_test_accuracy", "ferplus_test_macro_f1", "expw_dev_end_to_end_accuracy",
                    "expw_dev_end_to_end_macro_f1", "fer2013_test_accuracy"):
            assert got[key] == scores[key], key
        assert got["crops_per_s"] == speed["crops_per_s"] and got["speed_on"] == speed["on"]
        assert got["shown"]["ferplus"] == f"{scores['ferplus_test_accuracy']:.2%} / " \
                                          f"{scores['ferplus_test_macro_f1']:.3f}"


def test_models_reports_the_model_served_by_default(client: httpx.Client) -> None:
    body = client.get("/v1/models").json()
    assert body["default"] == "default"  # what `ferkit serve` without --model serves
    assert body["served"] == body["default"]  # this session's server runs without --model


# ---------------------------------------------------------------- predictions

def test_predict_astronaut_finds_one_happy_face(client: httpx.Client, astronaut_png: Path) -> None:
    with astronaut_png.open("rb") as f:
        response = client.post("/v1/predict", files={"file": ("astronaut.png", f, "image/png")})
    assert response.status_code == 200, response.text
    result = response.json()
    assert_prediction_shape(result)
    assert result["source"] == "astronaut.png"
    assert (result["width"], result["height"]) == Image.open(astronaut_png).size
    assert len(result["faces"]) == 1
    box = result["faces"][0]["box"]
    assert box["w"] > 20 and 0 <= box["x"] and box["x"] + box["w"] <= result["width"]
    assert result["faces"][0]["label"] == "happy"


def test_a_request_prior_moves_probabilities_as_the_cli_does(client: httpx.Client,
                                                              astronaut_png: Path) -> None:
    data = astronaut_png.read_bytes()

    def faces(**params: str) -> httpx.Response:
        return client.post("/v1/predict", params=params, files={"file": ("a.png", data, "image/png")})

    served = {}
    for prior in ("natural", "balanced", "happy=0.9"):
        response = faces(prior=prior)
        assert response.status_code == 200, response.text
        served[prior] = response.json()["faces"][0]["probabilities"]
    default = faces().json()["faces"][0]
    assert default["probabilities"] == pytest.approx(served["balanced"], abs=1e-6)  # the service's: auto
    assert served["happy=0.9"]["happy"] > served["natural"]["happy"]
    run = subprocess.run([sys.executable, "-m", "ferkit", "predict", "--json", "--prior", "natural",
                          str(astronaut_png)], capture_output=True, text=True, timeout=300)
    cli = json.loads(run.stdout.splitlines()[0])["faces"][0]["probabilities"]
    assert served["natural"] == pytest.approx(cli, abs=1e-5)
    bad = faces(prior="sleepy=1")
    assert bad.status_code == 422 and "prior 'sleepy=1'" in bad.json()["detail"]


def test_raw_body_gives_the_same_answer_as_multipart(client: httpx.Client, astronaut_png: Path) -> None:
    data = astronaut_png.read_bytes()
    raw = client.post("/v1/predict", content=data, headers={"content-type": "image/png"}).json()
    form = client.post("/v1/predict", files={"file": ("a.png", data, "image/png")}).json()
    assert raw["faces"] == form["faces"]


def test_same_json_as_cli_predict(client: httpx.Client, astronaut_png: Path) -> None:
    """The API's body equals ``ferkit predict --json`` for the same image (bar the source name)."""
    run = subprocess.run([sys.executable, "-m", "ferkit", "predict", "--json", str(astronaut_png)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    cli = json.loads(run.stdout.splitlines()[0])  # JSON Lines, one object per image
    api = client.post("/v1/predict", files={"file": (astronaut_png.name, astronaut_png.read_bytes())}).json()
    assert set(api) == set(cli)
    assert [f["box"] for f in api["faces"]] == [f["box"] for f in cli["faces"]]
    assert [f["landmarks"] for f in api["faces"]] == [f["landmarks"] for f in cli["faces"]]
    assert len(api["faces"][0]["landmarks"]) == 5  # YuNet, the service's default detector
    assert [f["label"] for f in api["faces"]] == [f["label"] for f in cli["faces"]]
    for a, c in zip(api["faces"], cli["faces"], strict=True):
        assert a["probabilities"] == pytest.approx(c["probabilities"], abs=1e-5)
    assert api["model"] == cli["model"] and (api["width"], api["height"]) == (cli["width"], cli["height"])


def test_no_face_is_200_with_an_empty_list(client: httpx.Client) -> None:
    response = client.post("/v1/predict", files={"file": ("blank.png", blank_png(), "image/png")})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["faces"] == [] and result["note"]


def test_no_face_note_names_an_option_the_api_takes(client: httpx.Client) -> None:
    result = client.post("/v1/predict", files={"file": ("blank.png", blank_png(), "image/png")}).json()
    assert "?detect=false" in result["note"]
    cropped = client.post("/v1/predict", params={"detect": "false"},
                          files={"file": ("blank.png", blank_png((48, 48)), "image/png")})
    assert cropped.status_code == 200, cropped.text
    faces = cropped.json()["faces"]
    assert len(faces) == 1 and faces[0]["box"] is None
    batch = client.post("/v1/predict/batch?detect=false",
                        files=[("files", ("a.png", blank_png((48, 48)), "image/png"))]).json()
    assert len(batch["results"][0]["faces"]) == 1


@pytest.mark.parametrize("size", [(1, 5000), (5000, 1), (1, 1)], ids=["1x5000", "5000x1", "1x1"])
def test_degenerate_sizes_are_answered_not_crashed_on(client: httpx.Client, size: tuple[int, int]) -> None:
    response = client.post("/v1/predict", content=blank_png(size), headers={"content-type": "image/png"})
    assert response.status_code == 200, response.text
    assert response.json()["faces"] == []


def test_batch_gives_one_result_per_file_in_order(client: httpx.Client, astronaut_png: Path) -> None:
    files = [("files", ("astronaut.png", astronaut_png.read_bytes(), "image/png")),
             ("files", ("blank.png", blank_png(), "image/png")),
             ("files", ("junk.jpg", b"not an image", "image/jpeg"))]
    response = client.post("/v1/predict/batch", files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    results = body["results"]
    assert [r["source"] for r in results] == ["astronaut.png", "blank.png", "junk.jpg"]
    assert len(results[0]["faces"]) == 1 and results[1]["faces"] == []
    # A failed file's reason is under `detail`, like every other refusal's.
    assert results[2]["status"] == 422 and "image" in results[2]["detail"] and "error" not in results[2]
    assert body["model"] == results[0]["model"]


def test_batch_refuses_too_many_files(client: httpx.Client) -> None:
    files = [("files", (f"{i}.png", b"x", "image/png")) for i in range(17)]
    assert_json_error(client.post("/v1/predict/batch", files=files), 400, 413, 422)


# ---------------------------------------------------------------- refusals

def test_oversize_declared_is_413_before_reading(client: httpx.Client) -> None:
    detail = assert_json_error(client.post("/v1/predict", content=b"\xff" * (MAX_UPLOAD + 70_000),
                                           headers={"content-type": "image/jpeg"}), 413)
    assert "10 MB" in detail


def test_oversize_streamed_without_length_is_413(client: httpx.Client) -> None:
    def chunks():  # no Content-Length: the server must count while reading
        for _ in range(200):
            yield b"\0" * 65536

    assert_json_error(client.post("/v1/predict", content=chunks(), headers={"content-type": "image/jpeg"}),
                      413)


def test_oversize_file_in_multipart_is_413(client: httpx.Client) -> None:
    big = b"\xff\xd8" + b"\0" * MAX_UPLOAD
    assert_json_error(client.post("/v1/predict", files={"file": ("big.jpg", big, "image/jpeg")}), 413)


def test_trailing_slash_gets_the_upload_limit_not_the_no_upload_one(
    client: httpx.Client, astronaut_png: Path
) -> None:
    photo = astronaut_png.read_bytes()
    assert len(photo) > 64 * 1024  # over the limit of routes that take no upload
    response = client.post("/v1/predict/", content=photo, headers={"content-type": "image/png"})
    assert response.status_code == 307 and response.headers["location"].endswith("/v1/predict")


def test_garbage_is_422_with_the_reason(client: httpx.Client) -> None:
    detail = assert_json_error(client.post("/v1/predict", files={"file": ("x.jpg", b"\x00garbage")}), 422)
    assert "not a recognised image format" in detail


def test_truncated_image_is_422(client: httpx.Client) -> None:
    jpeg = sample_photos()["jpeg"]
    detail = assert_json_error(client.post("/v1/predict", content=jpeg[: len(jpeg) // 2],
                                           headers={"content-type": "image/jpeg"}), 422)
    assert "truncated" in detail or "corrupt" in detail


def test_eps_is_refused_without_running_ghostscript_or_naming_paths(client: httpx.Client) -> None:
    """PostScript would run Ghostscript (where installed) with no timeout; only listed formats decode."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 90, 90)).save(buf, "EPS")
    assert buf.getvalue().startswith(b"%!PS-Adobe")
    eps = ("figure.eps", buf.getvalue(), "application/postscript")
    response = client.post("/v1/predict", files={"file": eps})
    detail = assert_json_error(response, 422)
    assert detail.startswith("not a usable image: not a recognised image format"), detail
    assert "\n" not in detail and "/" not in detail.replace("PGM/PPM", "")
    assert "ghostscript" not in detail.lower() and " gs " not in f" {detail} "


def test_empty_body_is_422(client: httpx.Client) -> None:
    detail = assert_json_error(client.post("/v1/predict", content=b"", headers={"content-type": "image/png"}),
                               422)
    assert "empty" in detail


def test_wrong_content_type_is_415(client: httpx.Client, astronaut_png: Path) -> None:
    response = client.post("/v1/predict", content=astronaut_png.read_bytes(),
                           headers={"content-type": "application/json"})
    assert "multipart/form-data" in assert_json_error(response, 415)


@pytest.mark.parametrize("make", [bomb_png, lambda: bomb_jpeg(sample_photos()["jpeg"])],
                         ids=["png", "jpeg"])
def test_decompression_bomb_is_refused_from_the_header(client: httpx.Client, make) -> None:
    start = time.monotonic()
    response = client.post("/v1/predict", content=make(), headers={"content-type": "image/png"})
    detail = assert_json_error(response, 413, 422)
    assert "too large" in detail
    assert time.monotonic() - start < 10  # refused, not decoded


def test_every_malformed_request_gets_a_4xx_with_a_reason(client: httpx.Client) -> None:
    for bad in malformed_requests(40, MAX_UPLOAD, seed=1):
        response = client.request(bad.method, bad.path, content=bad.body, headers=bad.all_headers())
        assert response.status_code in bad.expect, (bad.kind, response.status_code, response.text[:300])
        assert response.json()["detail"], bad.kind
    assert client.get("/healthz").json()["status"] == "ok"


def test_form_without_file_names_the_field(client: httpx.Client) -> None:
    body, ctype = multipart([("photo_url", None, b"http://example.com/x.jpg", None)])
    detail = assert_json_error(client.post("/v1/predict", content=body, headers={"content-type": ctype}), 422)
    assert "'file'" in detail


# ---------------------------------------------------------------- docs and page, offline

def test_docs_load_nothing_from_other_hosts(client: httpx.Client) -> None:
    html = client.get("/docs").text
    assert "SwaggerUIBundle" in html and "http://" not in html and "https://" not in html
    assert client.get("/static/swagger-ui-bundle.js").status_code == 200
    assert client.get("/static/swagger-ui.css").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/predict", "/v1/predict/batch", "/v1/models", "/healthz"} <= set(paths)


def test_page_and_its_assets_are_served(client: httpx.Client) -> None:
    html = client.get("/").text
    assert 'id="file"' in html and "/static/app.js" in html
    for asset in ("app.js", "style.css"):
        assert client.get(f"/static/{asset}").status_code == 200


def test_cli_refuses_an_unknown_model_in_one_line() -> None:
    run = subprocess.run([sys.executable, "-m", "ferkit", "serve", "--model", "no-such-model"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "unknown model" in run.stderr and "Traceback" not in run.stderr


def test_serves_an_exported_onnx_graph(tmp_path, astronaut_png) -> None:
    from support.launch import ServerProcess

    from ferkit.cli import main

    graph = tmp_path / "paper.onnx"
    assert main(["export", "--model", "paper", "--out", str(graph)]) == 0
    with ServerProcess("--model", str(graph), cwd=Path(__file__).resolve().parents[1]) as server:
        assert httpx.get(f"{server.url}/healthz").json()["model"] == "paper.onnx"
        photo = {"file": ("a.png", astronaut_png.read_bytes(), "image/png")}
        reply = httpx.post(f"{server.url}/v1/predict", files=photo, timeout=60)
        assert reply.status_code == 200
        assert [face["label"] for face in reply.json()["faces"]] == ["happy"]
    run = subprocess.run([sys.executable, "-m", "ferkit", "serve", "--model", str(tmp_path / "missing.onnx")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "no such ONNX file" in run.stderr and "Traceback" not in run.stderr
