"""The service's limits against abuse: read deadlines, bounded decoding, the API key, the Host check.

Real servers on loopback (``python -m ferkit serve``) with short deadlines, raw sockets for the
clients that misbehave below HTTP, and the app in-process for the access rules.
"""

from __future__ import annotations

import io
import os
import socket
import time
import tracemalloc
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from support.launch import ServerProcess

from ferkit.imageio import load_image, load_image_within
from ferkit.serve.engine import DECODE_MAX_SIDE, SERVE_MAX_PIXELS

REPO = Path(__file__).resolve().parents[1]
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def strict_server():
    """A server whose clients must send their headers within 1 s and their bodies within 2 s."""
    with ServerProcess("--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT),
                       cwd=REPO) as server:
        yield server


def _connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def _read_until_closed(sock: socket.socket, limit: float = 10.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    start, data = time.monotonic(), b""
    sock.settimeout(limit)
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data, time.monotonic() - start
        data += chunk


def _deleted_temp_files(pid: int) -> int:
    """Open files of ``pid`` that are unlinked temporaries (spooled uploads)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        count += target.endswith("(deleted)") and "/tmp" in target
    return count


def test_stalled_headers_get_408_and_the_connection_closes(strict_server) -> None:
    with _connect(strict_server) as sock:
        sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")  # and nothing more
        answer, waited = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert b"did not arrive in time" in answer
    assert HEADER_TIMEOUT * 0.8 < waited < HEADER_TIMEOUT + 3


def test_dribbling_headers_are_cut_off_too(strict_server) -> None:
    """A byte every 0.3 s keeps a naive server waiting forever; the deadline counts from the start."""
    answer = b""
    with _connect(strict_server) as sock:
        start = time.monotonic()
        sock.settimeout(0.3)
        for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100:
            try:
                sock.sendall(bytes([byte]))
                answer += sock.recv(65536)
                if answer:
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        elapsed = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert elapsed < HEADER_TIMEOUT + 3


def test_the_next_request_on_a_kept_alive_connection_has_a_deadline_too(strict_server) -> None:
    with _connect(strict_server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sock.settimeout(10)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # the next request's first line, then nothing
        answer, waited = _read_until_closed(sock)
    assert b"HTTP/1.1 408" in answer and answer.count(b"HTTP/1.1") == 1, answer[:100]
    assert waited < HEADER_TIMEOUT + 3


def test_pipelined_requests_are_all_answered_then_the_idle_connection_times_out(strict_server) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with _connect(strict_server) as sock:
        sock.sendall(request * 3)
        answer, waited = _read_until_closed(sock)
    assert answer.count(b"HTTP/1.1 200") == 3, answer[:300]
    assert answer.count(b"HTTP/1.1 408") == 1
    assert answer.rindex(b"HTTP/1.1 408") > answer.rindex(b"HTTP/1.1 200")
    assert HEADER_TIMEOUT * 0.8 < waited < HEADER_TIMEOUT + 3


def test_stalled_body_is_cut_off_and_its_temp_file_removed(strict_server, astronaut_png: Path) -> None:
    """A batch upload that stops half-way: its spooled part is on disk while it stalls and gone
    once the body deadline closes the connection."""
    photo = astronaut_png.read_bytes()
    part = photo * (3 * 1024 * 1024 // len(photo) + 1)  # over the 1 MB spool threshold
    boundary = "ferkitboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()
    declared = len(head) + len(part) + 64
    with _connect(strict_server) as sock:
        sock.sendall(f"POST /v1/predict/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                     f"multipart/form-data; boundary={boundary}\r\n"
                     f"Content-Length: {declared}\r\n\r\n".encode())
        sock.sendall(head + part[: 2 * 1024 * 1024])  # two thirds of the file, then silence
        time.sleep(0.5)
        assert _deleted_temp_files(strict_server.process.pid) >= 1
        answer, waited = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert waited < BODY_TIMEOUT + 3
    time.sleep(0.3)
    assert _deleted_temp_files(strict_server.process.pid) == 0


def test_healthz_stays_fast_while_hundreds_of_clients_stall(strict_server) -> None:
    stalled = []
    try:
        for _ in range(300):
            sock = _connect(strict_server)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            stalled.append(sock)
        latencies = []
        for _ in range(10):
            start = time.monotonic()
            assert httpx.get(f"{strict_server.url}/healthz", timeout=5).status_code == 200
            latencies.append(time.monotonic() - start)
        assert max(latencies) < 1.0, latencies
        time.sleep(HEADER_TIMEOUT + 1.0)
        closed = 0
        for sock in stalled:
            sock.settimeout(2)
            try:
                closed += _read_until_closed(sock, 2)[0].startswith(b"HTTP/1.1 408")
            except OSError:
                pass
        assert closed == len(stalled)
    finally:
        for sock in stalled:
            sock.close()
    assert "Traceback" not in strict_server.output(200_000)


# ---------------------------------------------------------------- decoding memory

def test_sixteen_bit_images_convert_without_a_float64_copy() -> None:
    """A 16-bit 4000x4000 PNG once made a float64 copy (128 MB) on the way to 8 bits."""
    pixels = (np.arange(4000 * 4000, dtype=np.uint32) % 65536).astype(np.uint16).reshape(4000, 4000)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG", compress_level=1)
    tracemalloc.start()
    try:
        rgb = load_image(buf.getvalue())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rgb.shape == (4000, 4000, 3) and rgb.dtype == np.uint8
    assert rgb.max() == 255  # scaled by the image's maximum, as before
    assert peak < 130 * 2**20, f"peak {peak / 2**20:.0f} MB of numpy memory"


def test_big_photos_are_decoded_reduced_and_answered_in_their_own_pixels(
        ferkit_server, astronaut_png: Path) -> None:
    """A 4096x4096 JPEG is decoded at 2048 (DCT scaling, never at full size) and its face box
    scaled back: the same face as in the 512x512 original, at 8 times the coordinates."""
    small = Image.open(astronaut_png).convert("RGB")
    big = io.BytesIO()
    small.resize((4096, 4096), Image.Resampling.BICUBIC).save(big, "JPEG", quality=90)
    arr, scale, size = load_image_within(big.getvalue(), DECODE_MAX_SIDE)
    assert arr.shape == (DECODE_MAX_SIDE, DECODE_MAX_SIDE, 3) and size == (4096, 4096) and scale == 2.0

    def predict(data: bytes) -> dict:
        reply = httpx.post(f"{ferkit_server.url}/v1/predict", content=data,
                           headers={"content-type": "application/octet-stream"}, timeout=120)
        assert reply.status_code == 200, reply.text
        return reply.json()

    original = predict(astronaut_png.read_bytes())
    enlarged = predict(big.getvalue())
    assert (enlarged["width"], enlarged["height"]) == (4096, 4096)
    assert [f["label"] for f in enlarged["faces"]] == [f["label"] for f in original["faces"]] == ["happy"]
    box, ref = enlarged["faces"][0]["box"], original["faces"][0]["box"]
    for key in "xywh":
        assert abs(box[key] - 8 * ref[key]) <= 0.06 * 8 * ref["w"], (box, ref)
    eye = enlarged["faces"][0]["landmarks"]["right_eye"]
    ref_eye = original["faces"][0]["landmarks"]["right_eye"]
    assert abs(eye[0] - 8 * ref_eye[0]) < 0.06 * 8 * ref["w"]


def test_the_service_refuses_more_pixels_than_it_decodes(ferkit_server) -> None:
    """The CLI reads up to 80 megapixels; one request of the service at most 50."""
    side = int((SERVE_MAX_PIXELS * 1.1) ** 0.5)
    buf = io.BytesIO()
    Image.new("L", (side, side)).save(buf, "PNG")
    reply = httpx.post(f"{ferkit_server.url}/v1/predict", content=buf.getvalue(),
                       headers={"content-type": "image/png"}, timeout=120)
    assert reply.status_code == 422 and "image dimensions too large" in reply.json()["detail"]


# ---------------------------------------------------------------- access

@pytest.fixture(scope="module")
def guarded_app():
    from ferkit.serve.app import create_app

    app = create_app(api_key="s3cret", allowed_hosts=["localhost", "127.0.0.1"])
    with TestClient(app, base_url="http://localhost") as client:
        yield client


def test_the_api_needs_the_key(guarded_app, astronaut_png: Path) -> None:
    refused = guarded_app.get("/v1/models")
    assert refused.status_code == 401 and "API key" in refused.json()["detail"]
    assert refused.headers["www-authenticate"] == "Bearer"
    assert guarded_app.get("/v1/models", headers={"X-API-Key": "wrong"}).status_code == 401
    assert guarded_app.get("/v1/models", headers={"X-API-Key": "s3cret"}).status_code == 200
    photo = {"file": ("a.png", astronaut_png.read_bytes(), "image/png")}
    assert guarded_app.post("/v1/predict", files=photo).status_code == 401
    answered = guarded_app.post("/v1/predict", files=photo, headers={"Authorization": "Bearer s3cret"})
    assert answered.status_code == 200 and answered.json()["faces"][0]["label"] == "happy"


def test_the_page_health_and_docs_stay_open(guarded_app) -> None:
    for path in ("/", "/static/app.js", "/healthz", "/docs", "/openapi.json"):
        assert guarded_app.get(path).status_code == 200, path


def test_a_foreign_host_header_is_refused(guarded_app) -> None:
    key = {"X-API-Key": "s3cret"}
    assert guarded_app.get("/healthz", headers={"Host": "attacker.example"}).status_code == 400
    assert guarded_app.get("/healthz", headers={"Host": "localhost:8000"}).status_code == 200
    assert guarded_app.get("/v1/models", headers={"Host": "127.0.0.1:9", **key}).status_code == 200


def test_loopback_service_answers_only_loopback_names(ferkit_server) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example."""
    url = f"{ferkit_server.url}/healthz"
    assert httpx.get(url, headers={"Host": "evil.example"}).status_code == 400
    assert httpx.get(url, headers={"Host": f"localhost:{ferkit_server.port}"}).status_code == 200


def test_binding_every_interface_without_a_key_warns(monkeypatch) -> None:
    monkeypatch.delenv("FERKIT_API_KEY", raising=False)
    with ServerProcess("--host", "0.0.0.0", cwd=REPO) as server:
        assert "warning: serving on 0.0.0.0 without an API key" in server.output()
        assert httpx.get(f"{server.url}/v1/models").status_code == 200
    monkeypatch.setenv("FERKIT_API_KEY", "from-the-environment")
    with ServerProcess("--host", "0.0.0.0", cwd=REPO) as server:
        assert "without an API key" not in server.output()
        assert httpx.get(f"{server.url}/v1/models").status_code == 401
        keyed = httpx.get(f"{server.url}/v1/models", headers={"X-API-Key": "from-the-environment"})
        assert keyed.status_code == 200


def test_connections_past_the_limit_get_503_and_the_file_limit_fits_them() -> None:
    """--max-connections 8: the ninth gets 503. The server starts with a soft open-file limit of
    200 (inherited) and raises it to fit its connections (8 + 256 for files and the rest)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 300:
        pytest.skip(f"the hard open-file limit ({hard}) leaves no room to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (200, hard))
    try:
        server = ServerProcess("--max-connections", "8", cwd=REPO)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    with server:
        limits = Path(f"/proc/{server.process.pid}/limits").read_text()
        line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
        assert int(line.split()[3]) >= 8 + 256
        idle = [_connect(server) for _ in range(8)]
        try:
            assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 503
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.5)
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200


def test_a_batch_body_over_its_total_is_refused_before_it_is_read(ferkit_server) -> None:
    with _connect(ferkit_server) as sock:
        sock.sendall(b"POST /v1/predict/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                     b"multipart/form-data; boundary=x\r\nContent-Length: 40000000\r\n\r\n")
        sock.settimeout(10)
        answer = b""
        while b"batch too large" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b"batch too large" in answer
