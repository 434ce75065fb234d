"""Load and abuse test of ``ferkit serve`` on loopback; writes benchmarks/results/serve_load.{json,md}.

(a) load: N concurrent clients (one keep-alive connection each) post a real face photo for a
fixed time; reports requests/s, latency percentiles, errors, 5xx and dropped connections.
(b) bad input: a few hundred malformed requests (tests/support/malformed.py) plus chunked oversized
bodies; every answer must be a 4xx with a JSON ``detail``, and /healthz must be fine afterwards.

Where the time goes: every 200 answer carries the server's ``Server-Timing`` header (queue, decode,
detect, crop, batch_wait, classify, post, serialise; the forward pass's batch), summarised per
stage; and the server process's CPU seconds over the load (/proc/PID/stat) per answered request.
``--before-root DIR`` first runs the same load against another checkout (e.g. ``git archive`` of
the previous commit), so that before and after share one run and one machine state.

    flock /tmp/ferkit-bench.lock python benchmarks/serve_load.py --duration 20 --clients 32 --bad 300
    python benchmarks/serve_load.py --smoke    # seconds: 2 s of load, 2 clients, 20 bad requests

The clients run on the same machine as the server, so they share its CPUs: each is a bare
asyncio HTTP/1.1 connection (:class:`Connection`, ~0.3 ms of CPU a request; httpx took ~3.5),
all opened before the clock starts, and their CPU per request is reported beside the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import multiprocessing
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
from repo_support import add_smoke_args, results_dir, write_text
from support.launch import ServerProcess
from support.malformed import BadRequest, malformed_requests
from timing import cpu_flags, cpu_model

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FERKIT_SHARED", REPO.parent / "shared"))


# ---------------------------------------------------------------- load

@dataclass
class LoadStats:
    latencies_ms: list[float] = field(default_factory=list)  # of 200 answers
    statuses: Counter = field(default_factory=Counter)
    dropped: int = 0
    timeouts: int = 0
    other_errors: Counter = field(default_factory=Counter)
    server_timing: list[str] = field(default_factory=list)  # the header of each 200 answer


def photo_jpeg(path: Path, size: tuple[int, int]) -> bytes:
    """The photo resized to ``size`` as a JPEG, like a webcam frame or phone upload."""
    buf = io.BytesIO()
    Image.open(path).convert("RGB").resize(size).save(buf, "JPEG", quality=90)
    return buf.getvalue()


class Connection:
    """One keep-alive HTTP/1.1 connection that posts a body and reads the answer, in a few lines of
    asyncio: the load-generating clients share the server's cores, and httpx spent ~3.5 ms of CPU
    a request there (about a quarter of the server's own), besides ~30 ms building each client,
    which held the other clients' answers unread at the start of every run. The server always
    answers with a Content-Length (JSON), which is all this reads."""

    def __init__(self, url: str) -> None:
        host, _, port = url.removeprefix("http://").rstrip("/").partition(":")
        self.host, self.port = host, int(port or 80)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def post(self, path: str, body: bytes, content_type: str) -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-case names, body) of one POST; reconnects if needed."""
        if self._writer is None or self._writer.is_closing():
            await self.connect()
        assert self._reader is not None and self._writer is not None
        self._writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                           f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
                           .encode("latin-1") + body)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in filter(None, lines):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        answer = await self._reader.readexactly(int(headers.get("content-length", 0)))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return int(status_line.split()[1]), headers, answer

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = None


async def one_client(url: str, body: bytes, deadline: float, max_requests: int, counter: list[int],
                     stats: LoadStats, connection: Connection | None = None) -> None:
    """One user with its own keep-alive connection, posting back to back until the deadline
    (``connection``: opened before the clock started)."""
    conn = connection or Connection(url)
    try:
        while time.monotonic() < deadline and counter[0] < max_requests:
            counter[0] += 1
            start = time.perf_counter()
            try:
                status, headers, _ = await asyncio.wait_for(
                    conn.post("/v1/predict", body, "image/jpeg"), timeout=60)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
                stats.dropped += 1
                await conn.close()
                continue
            except TimeoutError:
                stats.timeouts += 1
                await conn.close()
                continue
            stats.statuses[status] += 1
            if status == 200:
                stats.latencies_ms.append((time.perf_counter() - start) * 1000)
                stats.server_timing.append(headers.get("server-timing", ""))
    finally:
        await conn.close()


async def probe_health(url: str, deadline: float, latencies_ms: list[float]) -> None:
    """/healthz five times a second during the load: slow answers would mean a blocked event loop."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        # Untimed: a fresh process's first request pays httpx's own set-up and the connection
        # (35 ms on an idle machine, up to ~140 under the load), which is the probe, not the server.
        (await client.get("/healthz")).raise_for_status()
        while time.monotonic() < deadline:
            start = time.perf_counter()
            (await client.get("/healthz")).raise_for_status()
            latencies_ms.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(0.2)


def _probe_in_child(url: str, deadline: float, conn: Any) -> None:
    latencies: list[float] = []
    asyncio.run(probe_health(url, deadline, latencies))
    conn.send(latencies)
    conn.close()


def start_health_probe(url: str, deadline: float) -> tuple[Any, Any]:
    """/healthz probed from a process of its own: in the clients' process each probe would also
    wait for their event loop (a core's worth of work under load), not only for the server's."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_probe_in_child, args=(url, deadline, child), daemon=True)
    process.start()
    child.close()
    return process, parent


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parse_server_timing(header: str) -> tuple[dict[str, float], dict[str, int]]:
    """({stage: ms}, {"faces": n, "requests": n}) from one Server-Timing value."""
    stages: dict[str, float] = {}
    batch: dict[str, int] = {}
    for metric in filter(None, (m.strip() for m in header.split(","))):
        name, *params = (p.strip() for p in metric.split(";"))
        for param in params:
            key, _, value = param.partition("=")
            if key == "dur":
                stages[name] = float(value)
            elif key == "desc" and name == "batch":
                batch = {k: int(v) for k, v in (kv.split("=") for kv in value.strip('"').split())}
    return stages, batch


def summarise_stages(headers: list[str]) -> dict:
    """Per stage: mean, p50 and p99 ms over the answers that went through it; the batches shared."""
    per_stage: dict[str, list[float]] = {}
    faces, requests = [], []
    for header in headers:
        stages, batch = parse_server_timing(header)
        for name, ms in stages.items():
            per_stage.setdefault(name, []).append(ms)
        if stages:  # from the body received to the answer rendered; the rest is HTTP and the clients
            per_stage.setdefault("engine total", []).append(sum(stages.values()))
        if batch.get("faces"):
            faces.append(batch["faces"])
            requests.append(batch["requests"])
    table = {name: {"mean": round(statistics.fmean(v), 2), "p50": round(percentile(v, 50) or 0, 2),
                    "p99": round(percentile(v, 99) or 0, 2), "answers": len(v)}
             for name, v in per_stage.items()}
    return {"stages_ms": table,
            "batch_faces": {"mean": round(statistics.fmean(faces), 2) if faces else None,
                            "max": max(faces, default=None)},
            "batch_requests": {"mean": round(statistics.fmean(requests), 2) if requests else None,
                               "max": max(requests, default=None),
                               "histogram": dict(sorted(Counter(requests).items()))}}


async def run_load(url: str, body: bytes, clients: int, duration: float, max_requests: int,
                   server_pid: int | None = None) -> dict:
    stats, counter = LoadStats(), [0]
    connections = [Connection(url) for _ in range(clients)]
    await asyncio.gather(*(conn.connect() for conn in connections))  # before the clock
    server_cpu = process_cpu_s(server_pid) if server_pid else 0.0
    client_cpu = time.process_time()
    start = time.monotonic()
    deadline = start + duration
    prober, probes = start_health_probe(url, deadline)
    await asyncio.gather(*(one_client(url, body, deadline, max_requests, counter, stats, conn)
                           for conn in connections))
    elapsed = time.monotonic() - start
    health_ms = await asyncio.to_thread(probes.recv)
    prober.join()
    summary = summarise_load(stats, elapsed)
    summary["healthz_ms_under_load"] = {"p50": _round(percentile(health_ms, 50)),
                                        "p99": _round(percentile(health_ms, 99)),
                                        "max": _round(max(health_ms) if health_ms else None),
                                        "probes": len(health_ms)}
    ok = max(1, stats.statuses.get(200, 0))
    summary["cpu_ms_per_request"] = {
        "server": round((process_cpu_s(server_pid) - server_cpu) * 1000 / ok, 2) if server_pid else None,
        "clients": round((time.process_time() - client_cpu) * 1000 / ok, 2)}
    summary["server_timing"] = summarise_stages(stats.server_timing)
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
    health = load["healthz_ms_under_load"]
    lines = [
        "# ferkit serve: load and bad-input benchmark",
        "",
        f"Command: `{result['command']}`  ",
        f"Date: {result['date']}. Machine: {env['cpus']} CPUs ({env['cpu']}; {', '.join(env['cpu_flags'])}), "
        f"{env['platform']}; server and clients on the same machine (loopback), shared with other "
        f"jobs. Load average (1, 5, 15 min) before the run: {env['loadavg_before']}, after the load: "
        f"{env['loadavg_after']}.  ",
        f"Note: {result['note']}" if result["note"] else "",
        "",
        f"## Load: {result['config']['clients']} concurrent clients, {load['elapsed_s']} s, "
        f"{result['config']['image']}",
        "",
        "| server | requests/s | p50 ms | p95 ms | p99 ms | max ms | requests | errors | 5xx | dropped "
        "| /healthz p50 / p99 / max ms | server CPU ms / request | load avg after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
        *([_load_row(f"round {r['round']}, {r['server']}", r["load"]) for r in result["rounds"]]
          if "rounds" in result else [_load_row("this checkout", load)]),
        *(_median_lines(result) if "rounds" in result else []),
        "",
        f"Requests/s counts 200 answers over the whole phase, including the drain of requests still in "
        f"flight at the deadline. /healthz was probed five times a second during the load, from a "
        f"process of its own ({health['probes']} probes); with a blocked event loop it would wait "
        f"behind the queued predictions. The load-generating clients used "
        f"{load['cpu_ms_per_request']['clients']} ms of CPU per request on the same cores (one "
        f"keep-alive connection each, opened before the clock started).",
        "",
        *stage_lines(load),
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
    write_text(path, "\n".join(lines))


def _load_row(name: str, load: dict) -> str:
    lat, health = load["latency_ms"], load["healthz_ms_under_load"]
    return (f"| {name} | {load['requests_per_s']} | {lat['p50']} | {lat['p95']} | {lat['p99']} "
            f"| {lat['max']} "
            f"| {load['requests']} | {load['errors']} | {load['status_5xx']} | {load['dropped_connections']} "
            f"| {health['p50']} / {health.get('p99')} / {health['max']} "
            f"| {load['cpu_ms_per_request']['server']} | {load.get('loadavg_after', '')} |")


def round_medians(rounds: list[dict]) -> dict:
    """Per server, the median over rounds of the figures the bars are about."""
    out = {}
    for name in ("before", "after"):
        runs = [r["load"] for r in rounds if r["server"] == name]
        pick = {"requests_per_s": [x["requests_per_s"] for x in runs],
                "p99_ms": [x["latency_ms"]["p99"] for x in runs],
                "healthz_p99_ms": [x["healthz_ms_under_load"]["p99"] for x in runs],
                "server_cpu_ms_per_request": [x["cpu_ms_per_request"]["server"] for x in runs]}
        out[name] = {k: statistics.median(v) for k, v in pick.items() if v and None not in v}
    return out


def _median_lines(result: dict) -> list[str]:
    med = result["medians"]
    return ["", f"Before: {result['before']['root']}. Medians over the {len(result['rounds']) // 2} rounds: "
                + "; ".join(f"{name} {', '.join(f'{k} {v:g}' for k, v in m.items())}"
                            for name, m in med.items()) + "."]


def stage_lines(load: dict) -> list[str]:
    """The per-stage table from the answers' Server-Timing headers (none: a server without them)."""
    timing = load["server_timing"]
    if not timing["stages_ms"]:
        return []
    return [
        "### Where a request's time goes (this checkout, server-side, from `Server-Timing`)",
        "",
        "| stage | mean ms | p50 ms | p99 ms | answers |",
        "|---|---:|---:|---:|---:|",
        *[f"| {name} | {v['mean']} | {v['p50']} | {v['p99']} | {v['answers']} |"
          for name, v in timing["stages_ms"].items()],
        "",
        "engine total: the stages' sum per answer (against the client's latency above, what the "
        "engine does not see: reading the request, writing the answer, the clients' own loop). "
        "queue: waiting for a worker thread (decode, detect and crop run there); batch_wait: the crops "
        "waiting for the shared forward pass; classify: that pass (all its faces); post: the "
        "request's prior, boxes and JSON; serialise: rendering the bytes. Wall time under load, so "
        "the CPU stages include time the thread waited for a core.",
        f"Forward passes shared by {timing['batch_requests']['mean']} requests on average (max "
        f"{timing['batch_requests']['max']}; requests per pass: {timing['batch_requests']['histogram']}), "
        f"{timing['batch_faces']['mean']} faces (max {timing['batch_faces']['max']}).",
        "",
    ]


def measure_server(root: Path, args: argparse.Namespace, body: bytes, bad_count: int,
                   max_upload: int) -> tuple[dict, dict, str, str]:
    """(load, bad input, model, server log) of a server started from the checkout at ``root``."""
    with ServerProcess("--workers", str(args.workers), "--max-upload-mb", str(args.max_upload_mb),
                       cwd=root) as server:
        httpx.post(f"{server.url}/v1/predict", content=body, headers={"content-type": "image/jpeg"},
                   timeout=60).raise_for_status()  # warm-up
        load = asyncio.run(run_load(server.url, body, args.clients, args.duration, args.max_requests,
                                    server.process.pid))
        load["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        bad = asyncio.run(run_bad_input(server.url, bad_count, max_upload))
        model = httpx.get(f"{server.url}/healthz").json()["model"]
        server.stop()
        log = server.log.read_text(errors="replace")
    return load, bad, model, log


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
    p.add_argument("--before-root", type=Path, default=None,
                   help="also measure a server run from this checkout (its ferkit/), for a before/after")
    p.add_argument("--rounds", type=int, default=1,
                   help="with --before-root: alternating before/after rounds (ABBA order)")
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
    before = None
    rounds: list[dict] = []
    if args.before_root is not None:
        # Alternating rounds, each pair in swapped order (ABBA...), so that a change in the
        # machine's other load falls on both servers alike; the last round's "after" also
        # takes the bad input.
        root = args.before_root.resolve()
        for r in range(args.rounds):
            order = [("before", root), ("after", REPO)] if r % 2 == 0 else [("after", REPO), ("before", root)]
            for name, folder in order:
                last = name == "after" and r == args.rounds - 1
                run, bad_run, model_run, log_run = measure_server(folder, args, body,
                                                                  args.bad if last else 0, max_upload)
                rounds.append({"round": r + 1, "server": name, "load": run,
                               "server_log": server_log_problems(log_run)})
                if name == "before":
                    before = {"root": str(args.before_root), "load": run,
                              "server_log": rounds[-1]["server_log"]}
                elif last:
                    load, bad, model, log = run, bad_run, model_run, log_run
    else:
        load, bad, model, log = measure_server(REPO, args, body, args.bad, max_upload)

    result = {
        "command": shlex.join(["python", "benchmarks/serve_load.py",
                               *(sys.argv[1:] if argv is None else argv)]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "note": args.note,
        "config": {"clients": args.clients, "duration_s": args.duration, "workers": args.workers,
                   "image": f"{image.name} resized to {width}x{height} JPEG ({len(body):,} bytes)",
                   "model": model, "max_upload_mb": args.max_upload_mb},
        "environment": {"cpus": os.cpu_count(), "cpu": cpu_model(), "cpu_flags": cpu_flags(),
                        "platform": platform.platform(), "python": platform.python_version(),
                        "loadavg_before": loadavg, "loadavg_after": load["loadavg_after"]},
        **({"before": before, "rounds": rounds,
            "medians": round_medians(rounds)} if before else {}),
        "load": load,
        "bad_input": bad,
        "server_log": server_log_problems(log),
    }
    write_text(out / "serve_load.json", json.dumps(result, indent=2) + "\n")
    write_markdown(result, out / "serve_load.md")
    print((out / "serve_load.md").read_text())
    return 0 if bad["all_4xx_with_json_detail"] and load["status_5xx"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
