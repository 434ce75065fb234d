"""The FastAPI app: REST endpoints, the static web page and offline API docs.

Everything a client can send maps to a 2xx or a 4xx with a JSON ``detail`` saying why:
413 for bodies over the limit, 415 for unsupported content types, 422 for bodies that are not
a decodable image (including decompression bombs, refused from the header), 400 for malformed
multipart. A 500 would be a bug; the catch-all handler logs it and still answers in JSON.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

import ferkit
from ferkit.cpu import return_freed_memory
from ferkit.errors import FerkitError, ImageError
from ferkit.models.store import DEFAULT_MODEL, list_models, model_info
from ferkit.runtime.prior import parse_prior
from ferkit.serve.access import AccessMiddleware
from ferkit.serve.engine import Engine, Upload
from ferkit.serve.limits import (
    MB,
    MULTIPART_OVERHEAD,
    BodyLimit,
    BodyLimitMiddleware,
    PayloadTooLarge,
    describe_bytes,
)

log = logging.getLogger("ferkit.serve")

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_MAX_UPLOAD_BYTES = 10 * MB
DEFAULT_MAX_BATCH_FILES = 16
# A whole batch body, however many files: what one stalled batch can hold on disk until its
# read deadline (ferkit.serve.protocol) cuts it off.
DEFAULT_MAX_BATCH_BYTES = 32 * MB
# Bodies and form parts past this size wait in a temporary file, not in memory.
SPOOL_BYTES = 1 * MB
RAW_MEDIA_TYPES = ("", "application/octet-stream")
UNSUPPORTED_HINT = ("send multipart/form-data with a file field named 'file', "
                    "or the raw image bytes with Content-Type image/* or application/octet-stream")

_IMAGE_BODY = {"type": "string", "format": "binary"}
_PREDICT_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                       "properties": {"file": _IMAGE_BODY}}},
    "image/*": {"schema": _IMAGE_BODY},
    "application/octet-stream": {"schema": _IMAGE_BODY},
}}}
_EXAMPLE_FACE = {"box": {"x": 180, "y": 59, "w": 90, "h": 119}, "label": "happy", "score": 0.89,
                 "uncertain": False,
                 "probabilities": {"angry": 0.02, "disgust": 0.01, "fear": 0.02, "happy": 0.89, "sad": 0.02,
                                   "surprise": 0.02, "neutral": 0.03},
                 "landmarks": {"right_eye": [204.88, 105.42], "left_eye": [247.08, 105.28],
                               "nose": [224.11, 128.61], "right_mouth": [205.78, 145.44],
                               "left_mouth": [243.31, 145.39]},
                 "detection_score": 0.9379}
_EXAMPLE_RESULT = {"source": "astronaut.png", "width": 512, "height": 512, "faces": [_EXAMPLE_FACE],
                   "note": "", "model": "default"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"example": {"detail": "the reason, in words"}}}}


_REFUSALS = {
    400: _error("Malformed multipart body (no boundary, broken parts, too many files)."),
    413: _error("Body or image over the upload limit (Content-Length checked before reading)."),
    415: _error("Content-Type neither multipart/form-data, image/* nor application/octet-stream."),
    422: _error("Not a usable image: empty, not an image, truncated or corrupt, or too many pixels "
                "(decompression bomb, refused from the header), or a form without a file."),
}
_PREDICT_RESPONSES = {200: {"content": {"application/json": {"example": _EXAMPLE_RESULT}}}, **_REFUSALS}
_BATCH_RESPONSES = {200: {"content": {"application/json": {"example": {"model": "default", "results": [
    _EXAMPLE_RESULT, {"source": "notes.txt", "detail": "not a usable image: not a recognised image format",
                      "model": "default", "status": 422}]}}}}, **_REFUSALS}

_BATCH_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["files"], "properties": {
        "files": {"type": "array", "items": _IMAGE_BODY}}}},
}}}


def create_app(model: str = "default", max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               max_batch_files: int = DEFAULT_MAX_BATCH_FILES, threads: int | None = None,
               detector: str = "yunet", api_key: str = "",
               allowed_hosts: Sequence[str] = ("*",), prior: str = "auto") -> FastAPI:
    """Build the app; the model loads at startup so the first request does not pay for it.

    ``api_key``: required on ``/v1/...`` when set. ``allowed_hosts``: Host header names served
    ("*": any; "*.example.org": any subdomain)."""
    engine = Engine(model, threads=threads, detector=detector, prior=prior)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        log.info("serving model %s", engine.model_name)
        yield
        engine.close()

    app = FastAPI(title="ferkit", version=ferkit.__version__, lifespan=lifespan,
                  description="Facial expression recognition (FER2013's seven emotions) over HTTP.",
                  docs_url=None, redoc_url=None)
    app.state.engine = engine
    app.state.max_upload_bytes = max_upload_bytes
    app.state.max_batch_files = max_batch_files
    app.add_middleware(BodyLimitMiddleware,
                       limit_for=lambda path: _body_limit(path, max_upload_bytes, max_batch_files))
    app.add_middleware(AccessMiddleware, api_key=api_key, allowed_hosts=allowed_hosts)  # runs first
    _add_error_handlers(app)
    _add_api_routes(app)
    _add_page_routes(app)
    return app


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` (one per worker process), configured by ``run_server``."""
    return_freed_memory()  # a worker lives long: one spike's memory must not stay with it
    env = os.environ
    threads = int(env.get("FERKIT_SERVE_THREADS", "0")) or None
    hosts = [h.strip() for h in env.get("FERKIT_SERVE_ALLOWED_HOSTS", "*").split(",") if h.strip()]
    return create_app(model=env.get("FERKIT_SERVE_MODEL", "default"),
                      max_upload_bytes=int(env.get("FERKIT_SERVE_MAX_UPLOAD_BYTES",
                                                   DEFAULT_MAX_UPLOAD_BYTES)),
                      threads=threads, detector=env.get("FERKIT_SERVE_DETECTOR", "yunet"),
                      api_key=env.get("FERKIT_API_KEY", ""), allowed_hosts=hosts or ["*"],
                      prior=env.get("FERKIT_SERVE_PRIOR", "auto"))


def _body_limit(path: str, max_upload_bytes: int, max_batch_files: int) -> BodyLimit:
    """Largest acceptable body per route; the exact per-image check happens after parsing."""
    per_image = f"the limit is {describe_bytes(max_upload_bytes)} per image"
    path = path.rstrip("/") or "/"  # /v1/predict/ redirects to /v1/predict: same limit
    if path == "/v1/predict":
        return BodyLimit(max_upload_bytes + MULTIPART_OVERHEAD, f"upload too large: {per_image}")
    if path == "/v1/predict/batch":
        total = max(max_upload_bytes, DEFAULT_MAX_BATCH_BYTES) + MULTIPART_OVERHEAD
        return BodyLimit(total, f"batch too large: at most {describe_bytes(total)} in all and "
                                f"{max_batch_files} images, {per_image}")
    return BodyLimit(64 * 1024, "request body too large: this route takes no upload")


# ---------------------------------------------------------------- errors

def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ImageError)
    async def image_error(request: Request, exc: ImageError) -> JSONResponse:
        return JSONResponse({"detail": f"not a usable image: {exc}"}, status_code=422)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # Nobody will read this answer; it only keeps a hang-up out of the error log.
        return JSONResponse({"detail": "client disconnected before sending the whole body"}, status_code=400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal server error"}, status_code=500)


# ---------------------------------------------------------------- reading uploads

def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _is_raw_image_type(media_type: str) -> bool:
    return media_type in RAW_MEDIA_TYPES or media_type.startswith("image/")


async def _spool_raw_body(request: Request, max_bytes: int, spool: Any) -> None:
    """Write the body into ``spool``, refused (413) as soon as it passes ``max_bytes``. Once the
    spool is on disk, writes run in a worker thread, as Starlette's form parts do: forty uploads
    arriving at once must not hold the event loop (and /healthz) while their bytes hit the disk."""
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > max_bytes:
            raise PayloadTooLarge(f"image too large: the limit is {describe_bytes(max_bytes)}")
        if getattr(spool, "_rolled", False):
            await anyio.to_thread.run_sync(spool.write, chunk)
        else:
            spool.write(chunk)
    spool.seek(0)


def _file_part_upload(part: UploadFile, max_bytes: int) -> Upload:
    """The part as an Upload reading its (spooled) file; nothing is copied into memory here."""
    if part.size is not None and part.size > max_bytes:
        raise PayloadTooLarge(f"image {part.filename!r} too large: the limit is {describe_bytes(max_bytes)}")
    part.file.seek(0)
    return Upload(part.file, part.filename or "")


def _file_parts(form: Any) -> list[tuple[str, UploadFile]]:
    return [(key, value) for key, value in form.multi_items() if isinstance(value, UploadFile)]


@asynccontextmanager
async def received_image(request: Request, max_bytes: int) -> AsyncIterator[Upload]:
    """The image of a /v1/predict request (a multipart field 'file' or the raw body), in a
    temporary file past SPOOL_BYTES that is removed when the block ends, however it ends."""
    media_type = _media_type(request)
    if _is_raw_image_type(media_type):
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            await _spool_raw_body(request, max_bytes, spool)
            yield Upload(spool, "")
        return
    if media_type != "multipart/form-data":
        raise HTTPException(415, f"unsupported Content-Type {media_type!r}: {UNSUPPORTED_HINT}")
    async with request.form(max_files=1, max_fields=8) as form:
        parts = _file_parts(form)
        if not parts:
            raise HTTPException(422, "no image in the form: add a file field named 'file'")
        named = [part for key, part in parts if key == "file"]
        yield _file_part_upload(named[0] if named else parts[0][1], max_bytes)


def check_prior(prior: str | None) -> None:
    """A 422 with the reason for a ``?prior=`` that is not a prior."""
    if prior is not None:
        try:
            parse_prior(prior)
        except FerkitError as exc:
            raise HTTPException(422, str(exc)) from None


async def predict_many_images(request: Request, engine: Engine, max_bytes: int,
                              max_files: int, detect: bool = True,
                              prior: str | None = None) -> list[dict[str, Any]]:
    """Results for every file field of a /v1/predict/batch form, in order.

    Files are read and recognised one at a time (parts over 1 MB wait on disk), so a batch never
    holds more than one decoded image; a file that is not an image gets an error in its slot.
    """
    media_type = _media_type(request)
    if media_type != "multipart/form-data":
        raise HTTPException(415, f"unsupported Content-Type {media_type!r}: send multipart/form-data "
                                 "with one or more file fields named 'files'")
    async with request.form(max_files=max_files, max_fields=max_files + 8) as form:
        parts = _file_parts(form)
        if not parts:
            raise HTTPException(422, "no image in the form: add file fields named 'files'")
        return [await _predict_or_error(engine, _file_part_upload(part, max_bytes), detect, prior)
                for _, part in parts]


async def _predict_or_error(engine: Engine, upload: Upload, detect: bool,
                            prior: str | None = None) -> dict[str, Any]:
    try:
        return await engine.predict(upload, detect, prior=prior)
    except ImageError as exc:  # the reason under `detail`, as in every other refusal
        return {"source": upload.name, "detail": f"not a usable image: {exc}", "model": engine.model_name,
                "status": 422}


# ---------------------------------------------------------------- routes

def _add_api_routes(app: FastAPI) -> None:
    engine: Engine = app.state.engine

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, Any]:
        """Liveness and readiness: the model is loaded before the server accepts connections."""
        return {"status": "ok", "model": engine.model_name, "version": ferkit.__version__}

    @app.get("/v1/models", tags=["models"])
    async def models() -> dict[str, Any]:
        """The shipped models, each with what it is for (`purpose`) and its headline figures from its
        card (`ferplus_test_*`: FER+ PrivateTest, majority labels; `expw_dev_end_to_end_*`: web
        photos; `fer2013_test_accuracy`; `params`; `crops_per_s` on `speed_on`), measured under
        `prior`; null where the card has none; `shown`: the same as `ferkit model list` prints
        them. Also the model this service runs."""
        return {"served": engine.model_name, "default": DEFAULT_MODEL,
                "models": [model_info(name) for name in list_models()]}

    @app.post("/v1/predict", tags=["predict"], openapi_extra=_PREDICT_BODY, responses=_PREDICT_RESPONSES,
              response_model=dict[str, Any])
    async def predict(request: Request, detect: bool = True, explain: bool = False,
                      prior: str | None = None) -> JSONResponse:
        """Faces in one image, each with a box, the top label, its score and all 7 probabilities,
        the detector's five landmarks (`right_eye`, `left_eye`, `nose`, `right_mouth`, `left_mouth`:
        [x, y] pixels; "right" is the person's right; null with the Haar detector) and its score.

        Same JSON as `ferkit predict --json`. No face gives 200 with an empty `faces` list.
        `?detect=false`: the image is already a cropped face (one face, `box` null), as
        `ferkit predict --no-detect`. `uncertain` is true when the top probability is under the
        model card's threshold (wrong at least half the time on held-out faces).
        `?explain=true`: each face also has an `explanation`: `heatmap`, a 24x24 grid over the
        48x48 aligned crop of how much the label relied on each part (drop in log-odds when it is
        hidden), and `crop_to_image`, the 2x3 affine from crop pixels to image pixels.
        `?prior=`: how common each expression is taken to be for this request: `balanced`,
        `natural` (the training data's frequencies) or shares such as `happy=0.4,neutral=0.4`;
        default: the service's `--prior`.
        """
        check_prior(prior)
        async with received_image(request, app.state.max_upload_bytes) as upload:
            result, timings = await engine.recognise(upload, detect, explain, prior)
        # Rendered here, not by FastAPI's encoder (the same bytes, a fraction of the time), and
        # timed: the Server-Timing header carries each stage (benchmarks/serve_load.py reads it).
        start = time.perf_counter()
        response = JSONResponse(result)
        timings.seconds["serialise"] = time.perf_counter() - start
        response.headers["server-timing"] = timings.header()
        return response

    @app.post("/v1/predict/batch", tags=["predict"], openapi_extra=_BATCH_BODY, responses=_BATCH_RESPONSES)
    async def predict_batch(request: Request, detect: bool = True,
                            prior: str | None = None) -> dict[str, Any]:
        """Several images in one multipart request; one result per file, in order.

        A file that cannot be decoded gets `{"source", "detail", "model", "status": 422}` in its slot
        instead of failing the whole batch. `?detect=false`: every file is an already-cropped face.
        `?prior=`: as for `/v1/predict`.
        """
        check_prior(prior)
        results = await predict_many_images(request, engine, app.state.max_upload_bytes,
                                            app.state.max_batch_files, detect, prior)
        return {"model": engine.model_name, "results": results}


def _add_page_routes(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC_DIR / "favicon.png")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        """Swagger UI from the package's own copy, so the docs work without internet."""
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="ferkit API",
                                   swagger_js_url="/static/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger-ui.css",
                                   swagger_favicon_url="/static/favicon.png",
                                   swagger_ui_parameters={"validatorUrl": None})
