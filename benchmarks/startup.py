"""What a user installs and waits for: ferkit at an earlier commit (default 4edbcf9, PyTorch in every
install) against this tree (the light runtime), each built as a wheel and installed with the serve
extra into a fresh virtualenv, measured side by side in one run.

- size of each virtualenv on disk (``du``: allocated blocks);
- ``ferkit predict astronaut.png --json``: cold (every file of the virtualenv dropped from the page
  cache first, as after a reboot or a fresh install) and warm (run again at once), wall-clock from
  spawn to exit;
- ``ferkit serve`` (one worker): spawn until ``/healthz`` answers, cold and warm; then one request
  must say ``happy``.

Runs alternate between the two installs, and which goes first alternates by round, so that other
work on the machine slows both alike; the ratios matter more than the times.

    python benchmarks/startup.py --rounds 5      # results in benchmarks/results/startup.{json,md}
    python benchmarks/startup.py --smoke         # seconds: this tree in the running environment only

The old install pins torch==2.13.0, whose CPU wheel this project's machines keep on disk (pip finds
it through PIP_FIND_LINKS); the script stops if pip installed anything but a ``+cpu`` build.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

from repo_support import add_smoke_args, results_dir, write_results
from timing import cpu_line

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FERKIT_SHARED", REPO.parent / "shared"))
PYTHON = os.environ.get("PYTHON", "python3")


def build_wheel(source: Path, folder: Path) -> Path:
    """The wheel of ``source``, built into ``folder``/dist."""
    dist = folder / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(dist), str(source)], check=True, stderr=subprocess.DEVNULL)
    (wheel,) = dist.glob("ferkit-*.whl")
    return wheel


def build_venv(source: Path, folder: Path, extra_requirements: list[str]) -> Path:
    """A fresh virtualenv with the wheel of ``source`` and its serve extra installed."""
    wheel = build_wheel(source, folder)
    venv = folder / "venv"
    subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", *extra_requirements, f"{wheel}[serve]"],
                   check=True, stderr=subprocess.DEVNULL)
    return venv


def source_at(rev: str, folder: Path) -> Path:
    """The tree of commit ``rev`` (``git archive``: the checkout itself is not touched)."""
    archive = subprocess.run(["git", "archive", rev], cwd=REPO, check=True, capture_output=True).stdout
    folder.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def version_of(venv: Path, package: str) -> str | None:
    code = ("import importlib.metadata as m, sys\ntry: print(m.version(sys.argv[1]))\n"
            "except m.PackageNotFoundError: print('')")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code, package], capture_output=True,
                         text=True, check=True).stdout.strip()
    return out or None


def disk_usage(folder: Path) -> int:
    """Bytes allocated to the files under ``folder`` (what ``du`` counts; links not followed)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            total += st.st_blocks * 512
    return total


def evict(folder: Path) -> None:
    """Drop every file under ``folder`` from the page cache (the next run reads them from disk)."""
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def time_predict(venv: Path, photo: Path, cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run([str(venv / "bin" / "ferkit"), "predict", str(photo), "--json"], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    if done.returncode != 0 or [f["label"] for f in json.loads(done.stdout)["faces"]] != ["happy"]:
        raise RuntimeError(f"{venv}: predict failed:\n{done.stdout}\n{done.stderr}")
    return seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def time_serve(venv: Path, photo: Path, cwd: Path) -> float:
    """Seconds from spawning ``ferkit serve`` until /healthz answers; one request checks the answer."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    server = subprocess.Popen([str(venv / "bin" / "ferkit"), "serve", "--port", str(port)], cwd=cwd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.perf_counter() - start > 600:
                    raise RuntimeError(f"{venv}: ferkit serve did not start") from None
                time.sleep(0.02)
        seconds = time.perf_counter() - start
        request = urllib.request.Request(f"{url}/v1/predict", data=photo.read_bytes(),
                                         headers={"Content-Type": "image/png"})
        faces = json.load(urllib.request.urlopen(request, timeout=120))["faces"]
        if [f["label"] for f in faces] != ["happy"]:
            raise RuntimeError(f"{venv}: ferkit serve answered {faces}")
        return seconds
    finally:
        server.terminate()
        server.wait(timeout=60)


def summary(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", default="4edbcf9", help="commit to compare with (PyTorch in every install)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--photo", type=Path, default=SHARED / "data" / "photos" / "astronaut.png")
    parser.add_argument("--keep", type=Path,
                        help="build the virtualenvs here and keep them (a later run reuses what is there)")
    add_smoke_args(parser)
    args = parser.parse_args()
    if not args.photo.exists():
        raise SystemExit(f"{args.photo} not found: the astronaut photo is needed (--photo or $FERKIT_SHARED)")
    out = results_dir(args)
    if args.smoke:
        args.rounds, args.keep = 1, None

    work = args.keep or Path(tempfile.mkdtemp(prefix="ferkit-startup-"))
    work.mkdir(parents=True, exist_ok=True)
    # What "cold" drops from the page cache: each built virtualenv; with --smoke, this tree's package
    # only (the running environment is shared with other work, whose cache it would empty).
    cold = {}
    try:
        installs = {}
        if args.smoke:
            # Installing wheels into fresh virtualenvs takes minutes: smoke extracts the old commit
            # and builds this tree's wheel, then times this tree as installed in the running
            # environment, with no comparison.
            source_at(args.old, work / "old-src")
            wheel = build_wheel(REPO, work / "new")
            print(f"smoke: built {wheel.name} ({wheel.stat().st_size / 1e6:.1f} MB), no virtualenv, "
                  f"no old install; timing this tree in {sys.prefix}", file=sys.stderr, flush=True)
            installs["new"] = Path(sys.prefix)
            cold["new"] = REPO / "ferkit"
        else:
            print(f"building the virtualenvs in {work} ...", file=sys.stderr, flush=True)
            old_src = work / "old-src"
            if not old_src.exists():
                source_at(args.old, old_src)
            for name, source, extra in (("old", old_src, ["torch==2.13.0"]), ("new", REPO, [])):
                venv = work / name / "venv"
                if not venv.exists():
                    build_venv(source, work / name, extra)
                installs[name] = cold[name] = venv
            torch_old = version_of(installs["old"], "torch")
            if not torch_old or "+cpu" not in torch_old:
                raise SystemExit(f"the old install has torch {torch_old}, not a CPU build: stopping")
            if version_of(installs["new"], "torch"):
                raise SystemExit("the new install has torch: the runtime must not")
        packages = ("torch", "onnxruntime", "opencv-python-headless", "numpy", "pillow", "fastapi")
        versions = {name: {p: version_of(v, p) for p in packages} for name, v in installs.items()}
        sizes = {name: disk_usage(v) for name, v in installs.items()}

        cwd = work  # neither checkout is importable from here
        times: dict[str, dict[str, list[float]]] = {
            name: {k: [] for k in ("predict_cold", "predict_warm", "serve_cold", "serve_warm")}
            for name in installs}
        for r in range(args.rounds):
            order = [n for n in (["old", "new"] if r % 2 == 0 else ["new", "old"]) if n in installs]
            for kind, measure in (("predict", time_predict), ("serve", time_serve)):
                for name in order:
                    evict(cold[name])
                    times[name][f"{kind}_cold"].append(measure(installs[name], args.photo, cwd))
                    times[name][f"{kind}_warm"].append(measure(installs[name], args.photo, cwd))
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(
                f"{n} predict {times[n]['predict_cold'][-1]:.2f}/{times[n]['predict_warm'][-1]:.2f} s, "
                f"serve {times[n]['serve_cold'][-1]:.2f}/{times[n]['serve_warm'][-1]:.2f} s" for n in order),
                file=sys.stderr, flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)

    stats = {name: {k: summary(v) for k, v in t.items()} for name, t in times.items()}
    ratios = ({k: stats["new"][k]["median"] / stats["old"][k]["median"] for k in times["new"]}
              if "old" in stats else {})
    result = {
        "command": "python benchmarks/startup.py " + " ".join(sys.argv[1:]),
        "when": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{cpu_line()}, "
        f"{os.cpu_count()} CPUs", "old": args.old, "rounds": args.rounds, "photo": str(args.photo),
        "venv_bytes": sizes, "versions": versions, "seconds": times, "stats": stats,
        "ratio_new_to_old": ratios,
    }
    if args.smoke:
        result["smoke"] = (f"{args.old} extracted and this tree's wheel built, neither installed: 'new' "
                           f"is this tree as installed in {sys.prefix}, and its cold runs drop only the "
                           "ferkit package from the page cache; no 'old'")
    write_results(out, "startup", result, render(result))
    return 0


def _spread(stats: dict[str, float]) -> str:
    return f"{stats['median']:.2f} s ({stats['min']:.2f}-{stats['max']:.2f})"


def render(r: dict) -> str:
    mb = {k: v / 1e6 for k, v in r["venv_bytes"].items()}
    s, q = r["stats"], r["ratio_new_to_old"]
    old_mb, size_ratio = ((f"{mb['old']:,.0f} MB", f"{mb['new'] / mb['old']:.2f}") if "old" in mb
                          else ("not built", "-"))
    lines = [
        f"# Install size and start-up: ferkit at {r['old']} against the runtime install", "",
        f"`{r['command']}`, {r['when']}, {r['machine']}; {r['rounds']} rounds, the two installs "
        "alternating. Each is a fresh virtualenv with the ferkit wheel and its `serve` extra (pip, "
        "setuptools and compiled bytecode included).", "",
        "| | old (PyTorch in every install) | new (runtime) | new / old |", "| --- | --- | --- | --- |",
        f"| virtualenv on disk | {old_mb} | {mb['new']:,.0f} MB | {size_ratio} |",
    ]
    labels = {"predict_cold": "`ferkit predict astronaut.png --json`, cold", "predict_warm": "the same, warm",
              "serve_cold": "`ferkit serve` spawn to /healthz, cold", "serve_warm": "the same, warm"}
    for key, label in labels.items():
        old = _spread(s["old"][key]) if "old" in s else "not built"
        ratio = f"{q[key]:.2f}" if key in q else "-"
        lines.append(f"| {label}: median (min-max) | {old} | {_spread(s['new'][key])} | {ratio} |")
    versions = "; ".join(f"{name}: " + ", ".join(f"{p} {v}" for p, v in vs.items() if v)
                         for name, vs in r["versions"].items())
    lines += ["", "Cold: every file of the virtualenv dropped from the page cache before the run "
              "(`posix_fadvise(DONTNEED)`); the interpreter's standard library, shared by both, stays "
              "cached. Warm: the same command again at once. MB = 10^6 bytes.", "",
              f"Versions installed: {versions}.", ""]
    if "smoke" in r:
        lines += [f"Smoke run: {r['smoke']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
