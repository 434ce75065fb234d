"""``ferkit batch`` on a local Ray instance with 2 CPUs: real FER2013 faces and the astronaut give
the single-process CLI's rows face for face, a corrupt file is one error row, a worker killed
mid-job costs no row and repeats none, and a video split over two workers gives ``ferkit
video``'s rows with its face ids. Skipped where Ray is absent (``pip install 'ferkit[ray]'``),
except the check that the command then says so in one line.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, run_ferkit
from support.synthetic import background, paste, portrait_face, write_video

from ferkit.face import CLASSES
from ferkit.inference.types import LANDMARK_COLUMNS

PHOTOS = 200
FRAMES = 300
WITHOUT = REPO / "tests" / "support" / "without.py"


# ---------------------------------------------------------------- inputs and references

@pytest.fixture(scope="module")
def photo_dir(fer_csv: Path, astronaut_png: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 FER2013 faces as PNGs (upscaled 4x, the size at which YuNet finds them), the astronaut
    and a PNG whose data is garbage."""
    out = tmp_path_factory.mktemp("photos")
    with gzip.open(fer_csv, "rt") as f:
        f.readline()
        for i, line in zip(range(PHOTOS), f):
            pixels = np.array(line.split(",")[1].split(), np.uint8).reshape(48, 48)
            big = cv2.resize(pixels, (192, 192), interpolation=cv2.INTER_CUBIC)
            cv2.imwrite(str(out / f"fer{i:03d}.png"), big)
    (out / "astronaut.png").write_bytes(astronaut_png.read_bytes())
    (out / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not an image" * 40)
    return out


@pytest.fixture(scope="module")
def cli_rows(photo_dir: Path) -> dict[tuple[str, str], dict[str, str]]:
    """``ferkit predict --csv`` over the same folder, by (source, face)."""
    done = run_ferkit("predict", photo_dir, "--csv")
    assert done.returncode == 1, done.stderr  # the corrupt file
    return {(r["source"], r["face"]): r for r in csv.DictReader(io.StringIO(done.stdout))}


def two_face_frames(photo: Path, frames: int) -> Iterator[np.ndarray]:
    """RGB frames: one face gliding left to right all along, a second that comes in at frame 120
    and leaves at 230, so that ids are born and lost inside frame ranges."""
    face, base = portrait_face(photo, 150), background()
    for i in range(frames):
        frame = base.copy()
        paste(frame, face, 10 + i * 250 // frames, 40)
        if 120 <= i < 230:
            paste(frame, face, 460, 300 - (i - 120) // 2)
        yield frame


@pytest.fixture(scope="module")
def face_video(astronaut_png: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(two_face_frames(astronaut_png, FRAMES), tmp_path_factory.mktemp("video") / "two.mp4")


# ---------------------------------------------------------------- Ray

@pytest.fixture(scope="module")
def batch():
    """ferkit.batch on a local Ray instance with 2 CPUs, for the module."""
    pytest.importorskip("ray")
    import ray

    import ferkit.batch as fb

    fb.connect(num_cpus=2)
    yield fb
    ray.shutdown()


def ray_workers() -> list[int]:
    """PIDs of this process's Ray Data actor workers (``ray::MapWorker...``), from /proc."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            if title.startswith("ray::MapWorker") and _descends_from(int(entry.name), me):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return False


def assert_same_as_cli(rows: list[dict], cli: dict[tuple[str, str], dict[str, str]]) -> None:
    """Face for face: same rows, labels, boxes and notes; numbers within the CSV's rounding."""
    got = {(r["source"], "" if r["face"] is None else str(r["face"])): r for r in rows}
    assert len(got) == len(rows), "a row came twice"
    assert got.keys() == cli.keys()
    for key, want in cli.items():
        row = got[key]
        assert (row["label"] or "") == want["label"] and (row["error"] or "") == want["error"], key
        assert [row[k] for k in "xywh"] == [int(want[k]) if want[k] else None for k in "xywh"], key
        for c in ["score", *CLASSES]:
            assert row[c] is None if not want[c] else abs(row[c] - float(want[c])) <= 1e-5, (key, c)
        for c in LANDMARK_COLUMNS:
            assert row[c] is None if not want[c] else abs(row[c] - float(want[c])) <= 0.006, (key, c)


# ---------------------------------------------------------------- photos

def test_photos_match_the_single_process_cli_face_for_face(batch, photo_dir, cli_rows, tmp_path):
    ds = batch.predict_dataset([str(photo_dir)], workers=2)
    out = batch.write_dataset(ds, tmp_path / "out", "parquet")
    from ferkit.batch.engine import read_results

    rows = read_results(out).to_pylist()
    assert_same_as_cli(rows, cli_rows)
    assert sum(1 for r in rows if r["label"]) >= PHOTOS * 0.9  # real faces, found and classified
    (bad,) = [r for r in rows if r["error"]]  # one error row, and the job went on
    assert bad["source"].endswith("corrupt.png") and bad["error"].startswith("not a recognised image format")
    astronaut = [r for r in rows if r["source"].endswith("astronaut.png")]
    assert [r["label"] for r in astronaut] == ["happy"]


def test_a_worker_killed_mid_job_loses_and_repeats_no_row(batch, photo_dir, cli_rows):
    ds = batch.predict_dataset([str(photo_dir)], workers=2, batch_size=4)
    rows, killed, after, restarted = [], None, 0, False
    for row in ds.iter_rows():
        rows.append(row)
        if killed is None:  # the first row is out: both workers are busy with the rest
            first = ray_workers()
            deadline = time.monotonic() + 30
            while len(first) < 2 and time.monotonic() < deadline:  # on a loaded machine the second
                time.sleep(0.1)  # worker may still be starting (its process title not set yet)
                first = ray_workers()
            assert len(first) == 2, "Ray Data's worker processes not found"
            killed = first[0]
            os.kill(killed, signal.SIGKILL)
        else:
            after += 1
            restarted = restarted or bool(set(ray_workers()) - set(first))
    assert killed is not None and not Path(f"/proc/{killed}").exists()
    assert after >= PHOTOS // 2, "the job was nearly over when the worker died"
    assert restarted, "Ray did not start a worker in place of the killed one"
    assert_same_as_cli(rows, cli_rows)


# ---------------------------------------------------------------- video

def test_a_video_split_over_two_workers_gives_ferkit_videos_rows(batch, face_video, tmp_path):
    table = tmp_path / "frames.csv"
    done = run_ferkit("video", face_video, "--csv", table, "--quiet")
    assert done.returncode == 0, done.stderr
    want = list(csv.DictReader(table.open()))
    assert {r["face_id"] for r in want} == {"1", "2"}

    rows = batch.video_dataset([str(face_video)], workers=2, frames_per_range=100).take_all()
    rows.sort(key=lambda r: (r["frame"], r["face_id"]))
    assert len(rows) == len(want)
    for got, ref in zip(rows, want, strict=True):
        key = (ref["frame"], ref["face_id"])
        assert got["source"] == str(face_video) and got["error"] is None
        assert [got[k] for k in ("frame", "face_id", "x", "y", "w", "h")] == \
            [int(ref[k]) for k in ("frame", "face_id", "x", "y", "w", "h")], key
        assert got["label"] == ref["label"] and abs(got["time_s"] - float(ref["time_s"])) < 1e-3, key
        assert all(abs(got[c] - float(ref[c])) <= 1e-5 for c in CLASSES), key


# ---------------------------------------------------------------- the command

def test_the_command_joins_a_cluster_writes_json_lines_and_names_failures(batch, photo_dir, tmp_path):
    import ray

    few = tmp_path / "few"
    few.mkdir()
    for name in ("astronaut.png", "corrupt.png", "fer000.png"):
        (few / name).write_bytes((photo_dir / name).read_bytes())
    out = tmp_path / "out"
    done = run_ferkit("batch", "predict", few, "--out", out, "--format", "jsonl", "--workers", "1",
                      "--address", ray.get_runtime_context().gcs_address, "--quiet")
    assert done.returncode == 1, done.stderr  # one input failed
    lines = [line for line in done.stderr.splitlines() if line.startswith("ferkit:")]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"ferkit: {few / 'corrupt.png'}: not a recognised image format")
    assert "3 images, 2 face rows, 1 failed" in done.stderr and "Traceback" not in done.stderr

    from ferkit.batch.engine import read_results

    rows = read_results(out, "jsonl").to_pylist()
    assert sorted(Path(r["source"]).name for r in rows) == ["astronaut.png", "corrupt.png", "fer000.png"]
    (other := out / "notes.txt").write_text("mine")
    again = run_ferkit("batch", "predict", few, "--out", out, "--quiet")
    assert again.returncode == 2 and "notes.txt" in again.stderr and other.exists()


def test_without_ray_the_command_says_how_to_install_it(tmp_path):
    command = ["batch", "video", "clip.mp4", "--out", str(tmp_path / "out")]
    done = subprocess.run([sys.executable, str(WITHOUT), "ray,pyarrow", "--lookups-ok", "--", *command],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "ferkit: error: ferkit batch video needs Ray and pyarrow, which this install lacks: "
        "pip install 'ferkit[ray]'"]


def test_bad_options_are_one_line_errors_before_ray_starts(tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    for args, said in ((("--out", tmp_path / "no" / "out"), "does not exist"),
                       (("--out", out, "--model", "nosuch"), "unknown model 'nosuch'"),
                       (("--out", out, "--address", "127.0.0.1:1"), "cannot reach the Ray cluster at")):
        start = time.perf_counter()
        done = run_ferkit("batch", "predict", "x.png", *args)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and said in done.stderr, done.stderr
        assert time.perf_counter() - start < 30  # Ray would retry an address for minutes
