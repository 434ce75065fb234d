"""Every benchmark script runs: its smoke mode (tiny sizes, seconds) on real data, two at a time.

A benchmark that nothing runs rots (train_speed.py crashed for a week before anyone noticed).
Smoke runs go through the same code as full runs and write into a temporary folder; the
committed results in benchmarks/results must stay untouched.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conftest import REPO

BENCHMARKS = REPO / "benchmarks"
MODULES = {"repo_support.py", "timing.py"}  # imported by the scripts, not run
# Installs TensorFlow and fer (about 1.7 GB) into .venv-fer: checked for syntax only.
SYNTAX_ONLY = {"setup_fer_venv.sh"}
TIMEOUT_S = 180


def scripts() -> list[Path]:
    found = sorted(p for p in BENCHMARKS.iterdir() if p.suffix in (".py", ".sh"))
    return [p for p in found if p.name not in MODULES]


def fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def smoke(script: Path, out: Path) -> tuple[str, int, float, str]:
    """(name, exit status, seconds, the end of its output) of one smoke run."""
    if script.name in SYNTAX_ONLY:
        cmd = ["bash", "-n", str(script)]
    elif script.suffix == ".sh":
        cmd = ["bash", str(script), "--smoke", str(out)]
    else:
        cmd = [sys.executable, str(script), "--smoke", "--results-dir", str(out)]
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        code, text = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, text = -1, f"timed out after {TIMEOUT_S} s\n{exc.stdout or ''}{exc.stderr or ''}"
    return script.name, code, time.perf_counter() - start, text[-1500:]


def test_every_benchmark_script_runs_in_smoke_mode(shared, tmp_path):
    committed = fingerprint(BENCHMARKS / "results")
    with ThreadPoolExecutor(max_workers=2) as pool:  # two cores: two scripts at a time
        runs = list(pool.map(lambda s: smoke(s, tmp_path / s.stem), scripts()))
    failed = [f"{name}: exit {code} after {seconds:.0f} s\n{tail}"
              for name, code, seconds, tail in runs if code]
    assert not failed, "\n\n".join(failed)
    timings = ", ".join(f"{name} {seconds:.0f}s" for name, _, seconds, _ in runs)
    print(f"smoke runs: {timings}")
    assert fingerprint(BENCHMARKS / "results") == committed, "a smoke run wrote into benchmarks/results"
    # Each script that writes results wrote them into its own temporary folder.
    assert any((tmp_path / "train_speed").glob("train_speed.*"))
