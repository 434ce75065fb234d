"""Abuse benchmark of ``ferkit serve`` on loopback; writes benchmarks/results/serve_abuse.{json,md}.

One server (one worker, the default limits and read deadlines) takes, all at the same time for
``--duration`` seconds:

- 64 clients posting a 640x480 photo back to back (the users who should still be served);
- the malformed set (tests/support/malformed.py) plus EPS/PS uploads;
- slow clients: hundreds of connections dribbling their headers a byte a second;
- stalled clients: 9.9 MB uploads and 31 MB batch uploads (under the 32 MB batch limit) that
  stop before the end;
- the decode-memory worst cases (16-bit and 8-bit PNGs just under and over the pixel limit).

It reports status counts, tracebacks in the server log, 5xx, the worker's peak RSS over the
whole run and /healthz latency during it; then, on the idle server, the peak RSS each worst-case
input adds by itself (the kernel's high-water mark, reset before each request).

    python benchmarks/serve_abuse.py --duration 75
    python benchmarks/serve_abuse.py --smoke   # seconds: 3 s, few clients, 1000x1000 PNGs, 2 s timeouts

Bars (issue 14): 0 tracebacks, 0 5xx, peak RSS at most 1.5 GB, /healthz p99 under 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import repo_support  # noqa: F401  (tests/support on the path)
from PIL import Image
from repo_support import add_smoke_args, results_dir, write_text
from serve_load import (
    LoadStats,
    bad_requests,
    one_client,
    percentile,
    photo_jpeg,
    run_bad_input,
    summarise_load,
)
from support.launch import ServerProcess
from timing import cpu_flags, cpu_model

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FERKIT_SHARED", REPO.parent / "shared"))
MB = 1024 * 1024


# ---------------------------------------------------------------- worst-case inputs


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, "PNG", compress_level=9)
    return buf.getvalue()


def worst_inputs(side: int = 7000) -> dict[str, tuple[bytes, str]]:
    """name -> (body, content type): what costs the service the most memory per byte sent (the
    PNGs under the pixel limit are ``side`` x ``side``; just under it by default)."""
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10000 10000\nshowpage\n"
    size = f"{side}x{side} ({side * side / 1e6:.0f} MP)"
    inputs = {
        "16-bit gray PNG 8900x8980 (80 MP, over the limit)": (
            png(np.zeros((8980, 8900), np.uint16)),
            "image/png",
        ),
        f"16-bit gray PNG {size}": (png(np.full((side, side), 40000, np.uint16)), "image/png"),
        f"8-bit RGBA PNG {size}": (png(np.zeros((side, side, 4), np.uint8)), "image/png"),
        f"8-bit RGB PNG {size}": (png(np.zeros((side, side, 3), np.uint8)), "image/png"),
        "EPS": (eps, "application/postscript"),
        "EPS sent as image/png": (eps, "image/png"),
        "PS": (b"%!PS-Adobe-3.0\n/Times findfont 12 scalefont setfont showpage\n", "image/png"),
    }
    return inputs


# ---------------------------------------------------------------- misbehaving clients


async def dribbler(port: int, deadline: float, outcomes: Counter) -> None:
    """Sends a request's headers a byte a second, reconnecting whenever the server cuts it off."""
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 4000
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as exc:
            outcomes[f"connect failed: {type(exc).__name__}"] += 1
            await asyncio.sleep(1)
            continue
        status = await _dribble(reader, writer, request, deadline)
        outcomes[status] += 1
        writer.close()


async def _dribble(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, deadline: float
) -> str:
    for byte in request:
        if time.monotonic() > deadline:
            return "still open at the end"
        try:
            writer.write(bytes([byte]))
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(200), timeout=1.0)
        except TimeoutError:
            continue
        except OSError:
            return "connection reset"
        return answer.split(b"\r\n", 1)[0].decode(errors="replace") or "closed without answer"
    return "sent everything"


# The start of a batch body: one file part, whose bytes then stop coming.
BATCH_PART = (b'--x\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n'
              b"Content-Type: image/png\r\n\r\n")


async def staller(
    port: int, path: str, content_type: str, declared: int, sent: int, outcomes: Counter, waits: list[float],
    prefix: bytes = b"",
) -> None:
    """Declares ``declared`` bytes, sends ``prefix`` and ``sent`` zeros, then waits for the server
    to give up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {declared}\r\n\r\n".encode() + prefix
    )
    chunk = b"\0" * 65536
    for _ in range(0, sent, len(chunk)):
        writer.write(chunk)
        await writer.drain()
    start = time.monotonic()
    try:
        answer = await asyncio.wait_for(reader.read(200), timeout=600)
        outcomes[answer.split(b"\r\n", 1)[0].decode(errors="replace") or "closed without answer"] += 1
    except (TimeoutError, OSError) as exc:
        outcomes[type(exc).__name__] += 1
    waits.append(time.monotonic() - start)
    writer.close()


async def worst_case_sender(
    url: str, inputs: dict[str, tuple[bytes, str]], deadline: float, outcomes: Counter
) -> None:
    """Posts every worst-case input, four at a time, round after round until the deadline."""
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        while time.monotonic() < deadline:

            async def post(name: str, body: bytes, ctype: str) -> None:
                try:
                    reply = await client.post("/v1/predict", content=body, headers={"content-type": ctype})
                    outcomes[f"{name}: {reply.status_code}"] += 1
                except httpx.HTTPError as exc:
                    outcomes[f"{name}: {type(exc).__name__}"] += 1

            items = list(inputs.items())
            for i in range(0, len(items), 4):
                await asyncio.gather(*(post(n, b, c) for n, (b, c) in items[i : i + 4]))


# ---------------------------------------------------------------- watching the server


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak_rss(pid: int) -> None:
    """Restart the kernel's high-water mark (VmHWM) at the current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def watch(
    url: str, pid: int, deadline: float, health_ms: list[float], health_status: Counter, rss: list[float],
    health_at: list[float],
) -> None:
    """/healthz and the worker's RSS every 0.2 s, from a thread of its own: the abusing clients'
    event loop is busy pushing hundreds of MB at the start, and must not delay the probe."""
    with httpx.Client(base_url=url, timeout=30) as client:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                health_status[client.get("/healthz").status_code] += 1
            except httpx.HTTPError as exc:
                health_status[type(exc).__name__] += 1
            health_ms.append((time.perf_counter() - start) * 1000)
            health_at.append(time.monotonic())
            rss.append(rss_mb(pid))
            time.sleep(0.2)


async def abuse(
    server: ServerProcess, photo: bytes, args: argparse.Namespace, inputs: dict[str, tuple[bytes, str]]
) -> dict:
    malformed = bad_requests(args.bad, 10 * MB)
    deadline = time.monotonic() + args.duration
    load, counter = LoadStats(), [0]
    dribbles, stalls, worst, health_status = Counter(), Counter(), Counter(), Counter()
    stall_waits: list[float] = []
    health_ms: list[float] = []
    health_at: list[float] = []
    rss: list[float] = []
    pid = server.process.pid
    start = time.monotonic()
    tasks = [
        asyncio.to_thread(watch, server.url, pid, deadline, health_ms, health_status, rss, health_at),
        *(one_client(server.url, photo, deadline, 10**9, counter, load) for _ in range(args.clients)),
        *(dribbler(server.port, deadline, dribbles) for _ in range(args.dribblers)),
        *(
            staller(server.port, "/v1/predict", "image/png", int(9.9 * MB), 9 * MB, stalls, stall_waits)
            for _ in range(args.stalled)
        ),
        *(
            staller(
                server.port,
                "/v1/predict/batch",
                "multipart/form-data; boundary=x",
                31 * MB,
                24 * MB,
                stalls,
                stall_waits,
                BATCH_PART,
            )
            for _ in range(args.stalled_batches)
        ),
        worst_case_sender(server.url, inputs, deadline, worst),
    ]
    results = await asyncio.gather(run_bad_input(server.url, args.bad, 10 * MB, requests=malformed), *tasks)
    elapsed = time.monotonic() - start
    return {
        "elapsed_s": round(elapsed, 1),
        "users": summarise_load(load, elapsed),
        "bad_input": {
            k: results[0][k] for k in ("requests", "status_histogram", "all_4xx_with_json_detail", "failures")
        },
        "dribblers": dict(dribbles),
        "stalled_uploads": {
            "outcomes": dict(stalls),
            "seconds_until_cut": {
                "min": round(min(stall_waits), 1) if stall_waits else None,
                "max": round(max(stall_waits), 1) if stall_waits else None,
            },
        },
        "worst_case_inputs": dict(sorted(worst.items())),
        "healthz": {
            "statuses": {str(k): v for k, v in health_status.items()},
            "probes": len(health_ms),
            "p50_ms": round(percentile(health_ms, 50) or 0, 1),
            "p99_ms": round(percentile(health_ms, 99) or 0, 1),
            "max_ms": round(max(health_ms, default=0), 1),
            "slowest_at_s": round(health_at[health_ms.index(max(health_ms))] - start, 1)
            if health_ms
            else None,
        },
        "rss_mb": {
            "max_sampled": round(max(rss, default=0), 1),
            "peak_vmhwm": round(rss_mb(pid, "VmHWM"), 1),
        },
    }


def peak_per_input(
    inputs: dict[str, tuple[bytes, str]], photo: bytes, server_args: list[str]
) -> dict[str, dict]:
    """Each input alone on a fresh server warmed by one photo: the RSS it adds at its peak."""
    out = {}
    for name, (body, ctype) in inputs.items():
        with (
            ServerProcess(*server_args, cwd=REPO) as server,
            httpx.Client(base_url=server.url, timeout=120) as client,
        ):
            client.post(
                "/v1/predict", content=photo, headers={"content-type": "image/jpeg"}
            ).raise_for_status()
            pid = server.process.pid
            before = rss_mb(pid)
            reset_peak_rss(pid)
            reply = client.post("/v1/predict", content=body, headers={"content-type": ctype})
            out[name] = {
                "bytes": len(body),
                "status": reply.status_code,
                "detail": reply.json().get("detail", "")[:100] if reply.status_code != 200 else "",
                "rss_before_mb": round(before, 1),
                "peak_rss_added_mb": round(rss_mb(pid, "VmHWM") - before, 1),
            }
    return out


# ---------------------------------------------------------------- report


def write_markdown(result: dict, path: Path) -> None:
    a, bars = result["abuse"], result["bars"]
    users, health, bad = a["users"], a["healthz"], a["bad_input"]
    lat, cuts = users["latency_ms"], a["stalled_uploads"]["seconds_until_cut"]
    env = result["environment"]
    lines = [
        "# ferkit serve: abuse benchmark",
        "",
        f"Command: `{result['command']}`  ",
        f"Date: {result['date']}. Machine: {result['environment']['cpus']} CPUs "
        f"({env.get('cpu_model', 'CPU')}; {', '.join(env.get('cpu_flags', []))}), "
        f"{result['environment']['platform']}; server (1 worker, default limits: "
        f"{result['config']['server_args'] or 'none changed'}) and all clients on the same machine.  ",
        f"Note: {result['note']}" if result["note"] else "",
        "",
        "## Bars",
        "",
        "| bar | measured | met |",
        "|---|---|---|",
        *[f"| {b['bar']} | {b['measured']} | {'yes' if b['met'] else 'NO'} |" for b in bars],
        "",
        f"## All at once for {a['elapsed_s']} s",
        "",
        f"- **{result['config']['clients']} users** posting a 640x480 photo: {users['ok']} answered 200 "
        f"({users['requests_per_s']}/s), p50 {lat['p50']} ms, p99 {lat['p99']} ms; statuses "
        f"{users['statuses']}, {users['dropped_connections']} dropped, {users['timeouts']} timeouts.",
        f"- **{bad['requests']} malformed requests**: statuses {bad['status_histogram']}; "
        f"every one a 4xx with a JSON detail: {'yes' if bad['all_4xx_with_json_detail'] else 'NO'}.",
        f"- **{result['config']['dribblers']} header dribblers** (a byte a second, reconnecting when cut): "
        f"{a['dribblers']}.",
        f"- **{result['config']['stalled']} stalled 9.9 MB uploads and {result['config']['stalled_batches']} "
        f"stalled 31 MB batches** (sent 9 MB / 24 MB, then silence): {a['stalled_uploads']['outcomes']}, "
        f"cut after {cuts['min']}-{cuts['max']} s of silence.",
        f"- **Worst-case inputs**, four at a time, round after round: {a['worst_case_inputs']}.",
        f"- **/healthz** every 0.2 s: {health['statuses']}, p50 {health['p50_ms']} ms, "
        f"p99 {health['p99_ms']} ms, max {health['max_ms']} ms ({health['slowest_at_s']} s into the run).",
        f"- **Worker RSS**: peak {a['rss_mb']['peak_vmhwm']} MB (kernel high-water mark), "
        f"largest sample {a['rss_mb']['max_sampled']} MB.",
        f"- **Server log**: {result['server_log']['tracebacks']} tracebacks, "
        f"{result['server_log']['lines']} lines.",
        "",
        "## Each worst-case input alone (a fresh server, warmed by one photo)",
        "",
        "| input | bytes | status | RSS before | peak RSS added by the request | detail |",
        "|---|---:|---:|---:|---:|---|",
        *[
            f"| {name} | {v['bytes']:,} | {v['status']} | {v['rss_before_mb']} MB | "
            f"{v['peak_rss_added_mb']} MB | {v['detail']} |"
            for name, v in result["per_input"].items()
        ],
        "",
    ]
    write_text(path, "\n".join(line for line in lines if line is not None))


def bars_of(abuse_result: dict, log: dict) -> list[dict]:
    a = abuse_result
    five = sum(n for s, n in a["users"]["statuses"].items() if int(s) >= 500)
    five += sum(n for s, n in a["bad_input"]["status_histogram"].items() if s.isdigit() and int(s) >= 500)
    five += sum(n for k, n in a["worst_case_inputs"].items() if k.rsplit(": ", 1)[-1].startswith("5"))
    five += sum(n for k, n in a["healthz"]["statuses"].items() if k.startswith("5"))
    return [
        {
            "bar": "tracebacks in the server log: 0",
            "measured": log["tracebacks"],
            "met": log["tracebacks"] == 0,
        },
        {"bar": "5xx answers: 0", "measured": five, "met": five == 0},
        {
            "bar": "worker peak RSS <= 1.5 GB",
            "measured": f"{a['rss_mb']['peak_vmhwm']} MB",
            "met": a["rss_mb"]["peak_vmhwm"] <= 1536,
        },
        {
            "bar": "/healthz p99 < 1 s during the abuse",
            "measured": f"{a['healthz']['p99_ms']} ms",
            "met": a["healthz"]["p99_ms"] < 1000 and set(a["healthz"]["statuses"]) == {"200"},
        },
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=75.0, help="seconds of abuse (past the body timeout)")
    p.add_argument("--clients", type=int, default=64, help="users posting photos")
    p.add_argument("--dribblers", type=int, default=400, help="connections dribbling headers")
    p.add_argument("--stalled", type=int, default=40, help="stalled 9.9 MB uploads")
    p.add_argument("--stalled-batches", type=int, default=3, help="stalled 31 MB batch uploads")
    p.add_argument("--bad", type=int, default=984, help="malformed requests")
    p.add_argument("--server-args", default="", help="extra `ferkit serve` options, e.g. '--body-timeout 30'")
    p.add_argument("--note", default="", help="context recorded with the numbers")
    p.add_argument("--out", dest="results_dir", type=Path, help="the same as --results-dir")
    add_smoke_args(p)
    args = p.parse_args(argv)
    if args.smoke:  # short read deadlines, so that stalled clients are cut within the few seconds
        args.duration, args.clients, args.dribblers, args.stalled, args.stalled_batches, args.bad = (
            3.0, 2, 4, 1, 1, 20)
        args.server_args = f"{args.server_args} --header-timeout 2 --body-timeout 2".strip()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    portrait = SHARED / "data" / "photos" / "astronaut.png"
    if not portrait.exists():
        raise SystemExit(f"{portrait} not found: the face photo is needed ($FERKIT_SHARED)")
    out = results_dir(args)
    photo = photo_jpeg(portrait, (640, 480))
    inputs = worst_inputs(1000 if args.smoke else 7000)
    with ServerProcess(*shlex.split(args.server_args), cwd=REPO) as server:
        httpx.post(
            f"{server.url}/v1/predict", content=photo, headers={"content-type": "image/jpeg"}, timeout=60
        ).raise_for_status()  # warm-up
        abused = asyncio.run(abuse(server, photo, args, inputs))
        server.stop()
        log_text = server.log.read_text(errors="replace")
    alone = dict(list(inputs.items())[:2]) if args.smoke else inputs  # a fresh server each
    per_input = peak_per_input(alone, photo, shlex.split(args.server_args))
    log = {"tracebacks": log_text.count("Traceback"), "lines": log_text.count("\n")}
    result = {
        "command": shlex.join(
            ["python", "benchmarks/serve_abuse.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "note": args.note,
        "config": {
            k: getattr(args, k)
            for k in ("duration", "clients", "dribblers", "stalled", "stalled_batches", "bad", "server_args")
        },
        "environment": {
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model(),
            "cpu_flags": cpu_flags(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "abuse": abused,
        "per_input": per_input,
        "server_log": log,
    }
    result["bars"] = bars_of(abused, log)
    write_text(out / "serve_abuse.json", json.dumps(result, indent=2) + "\n")
    write_markdown(result, out / "serve_abuse.md")
    print((out / "serve_abuse.md").read_text())
    judged = result["bars"]
    if args.smoke:  # seconds on a shared machine: /healthz must answer 200, its p99 is not judged
        judged = [b for b in judged if not b["bar"].startswith("/healthz")]
        judged.append({"met": set(abused["healthz"]["statuses"]) == {"200"}})
    return 0 if all(b["met"] for b in judged) else 1


if __name__ == "__main__":
    raise SystemExit(main())
