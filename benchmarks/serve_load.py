"""Load and abuse test of ``ferkit serve`` on loopback; writes benchmarks/results/serve_load.{json,md}.

(a) load: N concurrent clients (one keep-alive connection each) post a real face photo for a
fixed time; reports requests/s, latency percentiles, errors, 5xx and dropped connections.
(b) bad input: a few hundred malformed requests (tests/support/malformed.py) plus chunked oversized
bodies; every answer must be a 4xx with a JSON ``detail``, and /healthz must be fine afterwards.

    python benchmarks/serve_load.py --duration 20 --clients 32 --bad 300
    python benchmarks/serve_load.py --smoke    # seconds: 2 s of load, 2 clients, 20 bad requests

The clients run on the same machine as the server, so they share its CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import repo_support  # noqa: F401  (tests/support on the path)
from PIL import Image
from repo_support import add_smoke_args, results_dir
from support.launch import ServerProcess
from support.malformed import BadRequest, malformed_requests

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FERKIT_SHARED", REPO.parent / "shared"))

DROPPED = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.ConnectError,
           httpx.CloseError)


# ---------------------------------------------------------------- load

@dataclass
class LoadStats:
    latencies_ms: list[float] = field(default_factory=list)  # of 200 answers
    statuses: Counter = field(default_factory=Counter)
    dropped: int = 0
    timeouts: int = 0
    other_errors: Counter = field(default_factory=Counter)


def photo_jpeg(path: Path, size: tuple[int, int]) -> bytes:
    """The photo resized to ``size`` as a JPEG, like a webcam frame or phone upload."""
    buf = io.BytesIO()
    Image.open(path).convert("RGB").resize(size).save(buf, "JPEG", quality=90)
    return buf.getvalue()


async def one_client(url: str, body: bytes, deadline: float, max_requests: int, counter: list[int],
                     stats: LoadStats) -> None:
    """One user with its own keep-alive connection, posting back to back until the deadline."""
    async with httpx.AsyncClient(base_url=url, timeout=60,
                                 limits=httpx.Limits(max_connections=1)) as client:
        while time.monotonic() < deadline and counter[0] < max_requests:
            counter[0] += 1
            start = time.perf_counter()
            try:
                response = await client.post("/v1/predict", content=body,
                                             headers={"content-type": "image/jpeg"})
            except DROPPED:
                stats.dropped += 1
                continue
            except httpx.TimeoutException:
                stats.timeouts += 1
                continue
            except httpx.HTTPError as exc:
                stats.other_errors[type(exc).__name__] += 1
                continue
            stats.statuses[response.status_code] += 1
            if response.status_code == 200:
                stats.latencies_ms.append((time.perf_counter() - start) * 1000)


async def probe_health(url: str, deadline: float, latencies_ms: list[float]) -> None:
    """/healthz twice a second during the load: slow answers would mean a blocked event loop."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            (await client.get("/healthz")).raise_for_status()
            latencies_ms.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(0.5)


async def run_load(url: str, body: bytes, clients: int, duration: float, max_requests: int) -> dict:
    stats, counter, health_ms = LoadStats(), [0], []
    start = time.monotonic()
    deadline = start + duration
    await asyncio.gather(probe_health(url, deadline, health_ms),
                         *(one_client(url, body, deadline, max_requests, counter, stats)
                           for _ in range(clients)))
    elapsed = time.monotonic() - start
    summary = summarise_load(stats, elapsed)
    summary["healthz_ms_under_load"] = {"p50": _round(percentile(health_ms, 50)),
                                        "max": _round(max(health_ms) if health_ms else None),
                                        "probes": len(health_ms)}
    return summary


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summarise_load(stats: LoadStats, elapsed: float) -> dict:
    answered = sum(stats.statuses.values())
    errors = answered - stats.statuses.get(200, 0) + stats.dropped + stats.timeouts + \
        sum(stats.other_errors.values())
    lat = stats.latencies_ms
    return {
        "elapsed_s": round(elapsed, 2),
        "requests": answered + stats.dropped + stats.timeouts + sum(stats.other_errors.values()),
        "ok": stats.statuses.get(200, 0),
        "requests_per_s": round(stats.statuses.get(200, 0) / elapsed, 2),
        "latency_ms": {"p50": _round(percentile(lat, 50)), "p95": _round(percentile(lat, 95)),
                       "p99": _round(percentile(lat, 99)), "max": _round(max(lat) if lat else None),
                       "mean": _round(statistics.fmean(lat) if lat else None)},
        "errors": errors,
        "status_5xx": sum(n for s, n in stats.statuses.items() if s >= 500),
        "statuses": {str(s): n for s, n in sorted(stats.statuses.items())},
        "dropped_connections": stats.dropped,
        "timeouts": stats.timeouts,
        "other_client_errors": dict(stats.other_errors),
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


# ---------------------------------------------------------------- bad input

def streamed_oversize(max_upload_bytes: int) -> BadRequest:
    """An oversized body sent chunked (no Content-Length): the server must count as it reads."""
    return BadRequest("oversized body, chunked (no Content-Length)", b"", "image/jpeg", expect=(413,),
                      headers={"x-stream-bytes": str(max_upload_bytes + 256 * 1024)})


async def send_bad(client: httpx.AsyncClient, bad: BadRequest) -> tuple[str, int | str, bool, str]:
    """(kind, status or client error, acceptable?, detail)."""
    content: Any = bad.body
    if "x-stream-bytes" in bad.headers:
        total = int(bad.headers["x-stream-bytes"])

        async def chunks():
            for _ in range(0, total, 65536):
                yield b"\0" * 65536
        content = chunks()
    try:
        response = await client.request(bad.method, bad.path, content=content, headers=bad.all_headers())
    except httpx.HTTPError as exc:
        return bad.kind, type(exc).__name__, False, str(exc)
    try:
        detail = str(response.json()["detail"])
    except (ValueError, KeyError, TypeError):
        detail = ""
    ok = 400 <= response.status_code < 500 and response.status_code in bad.expect and bool(detail)
    return bad.kind, response.status_code, ok, detail


def bad_requests(count: int, max_upload_bytes: int) -> list[BadRequest]:
    """The malformed set plus chunked oversized bodies (built before any clock starts: seconds)."""
    return malformed_requests(count, max_upload_bytes, seed=7) + [streamed_oversize(max_upload_bytes)
                                                                  for _ in range(3)]


async def run_bad_input(url: str, count: int, max_upload_bytes: int, concurrency: int = 8,
                        requests: list[BadRequest] | None = None) -> dict:
    requests = bad_requests(count, max_upload_bytes) if requests is None else requests
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        async def limited(bad: BadRequest):
            async with semaphore:
                return await send_bad(client, bad)
        outcomes = await asyncio.gather(*(limited(bad) for bad in requests))
        health = (await client.get("/healthz")).json()
    by_kind: dict[str, Counter] = {}
    for kind, status, _, _ in outcomes:
        by_kind.setdefault(kind, Counter())[str(status)] += 1
    failures = [{"kind": k, "status": s, "detail": d[:200]} for k, s, ok, d in outcomes if not ok]
    return {
        "requests": len(outcomes),
        "status_histogram": dict(sorted(Counter(str(s) for _, s, _, _ in outcomes).items())),
        "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
        "all_4xx_with_json_detail": not failures,
        "failures": failures[:20],
        "example_details": {k: d for k, _, _, d in outcomes},
        "healthz_after": health,
    }


# ---------------------------------------------------------------- report

def server_log_problems(log: str) -> dict:
    return {"tracebacks": log.count("Traceback"), "unexpected_errors": log.count("unexpected error")}


def write_markdown(result: dict, path: Path) -> None:
    load, bad, env = result["load"], result["bad_input"], result["environment"]
    lat, health = load["latency_ms"], load["healthz_ms_under_load"]
    lines = [
        "# ferkit serve: load and bad-input benchmark",
        "",
        f"Command: `{result['command']}`  ",
        f"Date: {result['date']}. Machine: {env['cpus']} CPUs, {env['platform']}; server and clients on "
        f"the same machine (loopback). Load average before the run: {env['loadavg_before']}.  ",
        f"Note: {result['note']}" if result["note"] else "",
        "",
        f"## Load: {result['config']['clients']} concurrent clients, {load['elapsed_s']} s, "
        f"{result['config']['image']}",
        "",
        "| requests/s | p50 ms | p95 ms | p99 ms | max ms | requests | errors | 5xx | dropped connections |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {load['requests_per_s']} | {lat['p50']} | {lat['p95']} | {lat['p99']} | {lat['max']} "
        f"| {load['requests']} | {load['errors']} | {load['status_5xx']} | {load['dropped_connections']} |",
        "",
        f"Requests/s counts 200 answers over the whole phase, including the drain of requests still in "
        f"flight at the deadline. /healthz answered in {health['p50']} ms (median, max {health['max']} ms, "
        f"{health['probes']} probes) during the load; with a blocked event loop it would wait "
        f"behind the queued predictions (the p50 above).",
        "",
        f"## Bad input: {bad['requests']} malformed requests",
        "",
        f"Every answer a 4xx with a JSON `detail`: **{'yes' if bad['all_4xx_with_json_detail'] else 'NO'}**. "
        f"/healthz afterwards: `{json.dumps(bad['healthz_after'])}`.",
        "",
        "| status | count |",
        "|---:|---:|",
        *[f"| {s} | {n} |" for s, n in bad["status_histogram"].items()],
        "",
        "| kind | statuses | example detail |",
        "|---|---|---|",
        *[f"| {k} | {', '.join(f'{s}: {n}' for s, n in v.items())} | "
          f"{bad['example_details'].get(k, '')[:90].replace('|', '/')} |" for k, v in bad["by_kind"].items()],
        "",
        f"Server log: {result['server_log']['tracebacks']} tracebacks, "
        f"{result['server_log']['unexpected_errors']} unexpected errors.",
        "",
    ]
    path.write_text("\n".join(lines))


# ---------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--max-requests", type=int, default=100_000, help="stop the load phase after this many")
    p.add_argument("--bad", type=int, default=300, help="malformed requests to send")
    p.add_argument("--image", type=Path, default=None, help="face photo (default: shared astronaut.png)")
    p.add_argument("--size", default="640x480", help="resize the photo to WxH before sending")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--max-upload-mb", type=float, default=10.0)
    p.add_argument("--note", default="", help="context recorded with the numbers (e.g. other load)")
    p.add_argument("--out", dest="results_dir", type=Path, help="the same as --results-dir")
    add_smoke_args(p)
    args = p.parse_args(argv)
    if args.smoke:
        args.duration, args.clients, args.bad = 2.0, 2, 20
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    image = args.image or SHARED / "data" / "photos" / "astronaut.png"
    if not image.exists():
        raise SystemExit(f"{image} not found: a face photo is needed (--image or $FERKIT_SHARED)")
    out = results_dir(args)
    width, height = (int(v) for v in args.size.lower().split("x"))
    body = photo_jpeg(image, (width, height))
    max_upload = int(args.max_upload_mb * 1024 * 1024)
    loadavg = [round(x, 2) for x in os.getloadavg()]

    with ServerProcess("--workers", str(args.workers), "--max-upload-mb", str(args.max_upload_mb),
                       cwd=REPO) as server:
        httpx.post(f"{server.url}/v1/predict", content=body, headers={"content-type": "image/jpeg"},
                   timeout=60).raise_for_status()  # warm-up
        load = asyncio.run(run_load(server.url, body, args.clients, args.duration, args.max_requests))
        bad = asyncio.run(run_bad_input(server.url, args.bad, max_upload))
        model = httpx.get(f"{server.url}/healthz").json()["model"]
        server.stop()
        log = server.log.read_text(errors="replace")

    result = {
        "command": shlex.join(["python", "benchmarks/serve_load.py",
                               *(sys.argv[1:] if argv is None else argv)]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "note": args.note,
        "config": {"clients": args.clients, "duration_s": args.duration, "workers": args.workers,
                   "image": f"{image.name} resized to {width}x{height} JPEG ({len(body):,} bytes)",
                   "model": model, "max_upload_mb": args.max_upload_mb},
        "environment": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version(), "loadavg_before": loadavg},
        "load": load,
        "bad_input": bad,
        "server_log": server_log_problems(log),
    }
    (out / "serve_load.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, out / "serve_load.md")
    print((out / "serve_load.md").read_text())
    return 0 if bad["all_4xx_with_json_detail"] and load["status_5xx"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
