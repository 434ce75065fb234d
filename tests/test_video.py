"""``ferkit video`` on a 300-frame 640x480 video of a real face moving, made at test time."""

from __future__ import annotations

import csv
import subprocess
import sys
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import pytest
from support.synthetic import moving_face_frames, write_video

from ferkit.cli import main
from ferkit.inference.video import VideoAnalyzer

REPO = Path(__file__).resolve().parents[1]
FRAMES = 300


@pytest.fixture(scope="module")
def face_video(astronaut_png, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "moving_face.mp4"
    return write_video(moving_face_frames(astronaut_png, FRAMES), path, fps=30)


def test_video_csv_plot_and_annotated_output(face_video, tmp_path):
    out, table, plot = tmp_path / "annotated.mp4", tmp_path / "frames.csv", tmp_path / "emotions.png"
    proc = subprocess.run(
        [sys.executable, "-m", "ferkit", "video", str(face_video), "--out", str(out), "--csv", str(table),
         "--plot", str(plot)], cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "frames/s" in proc.stderr and "Traceback" not in proc.stderr
    rows = list(csv.DictReader(table.open()))
    assert len(rows) >= FRAMES
    assert {r["face_id"] for r in rows} == {"1"}  # one face, one id all the way through
    assert [int(r["frame"]) for r in rows] == list(range(FRAMES))
    assert abs(float(rows[-1]["time_s"]) - (FRAMES - 1) / 30) < 1e-3
    # YuNet's landmarks in every row, inside the face's box
    for r in rows[::50]:
        x, y, w, h = (int(r[k]) for k in "xywh")
        assert x <= float(r["right_eye_x"]) < float(r["left_eye_x"]) <= x + w
        assert y <= float(r["right_eye_y"]) < float(r["right_mouth_y"]) <= y + h
        assert float(r["detection_score"]) >= 0.6
    assert abs(sum(float(rows[0][c]) for c in ("angry", "disgust", "fear", "happy", "sad", "surprise",
                                                 "neutral")) - 1) < 1e-3
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (640, 480)
    cap.release()
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"


def test_every_nth_frame_is_analysed_and_the_rest_reuse_it(recognizer, astronaut_png):
    analyzer = VideoAnalyzer(recognizer, every=3)
    frames = islice(moving_face_frames(astronaut_png, FRAMES), 7)
    results = [analyzer.analyse(i, f) for i, f in enumerate(frames)]
    assert [analysed for _, _, analysed in results] == [True, False, False, True, False, False, True]
    assert results[1][0] is results[0][0] and all(ids == [1] for _, ids, _ in results)


def test_missing_camera_is_a_clear_error(capsys):
    assert main(["video", "--camera", "97", "--quiet"]) == 2
    assert "cannot open camera 97" in capsys.readouterr().err


def test_unreadable_video_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    assert main(["video", str(bad), "--quiet"]) == 2
    assert "bad.mp4" in capsys.readouterr().err


@pytest.mark.parametrize("frames", [25, 5])  # past the 2 s warm-up, and a recording shorter than it
def test_camera_recording_plays_at_the_rate_frames_came(tmp_path: Path, frames: int) -> None:
    """A camera that says 30 frames/s but delivers 10 gives a file of 10 frames/s, all frames kept."""
    from ferkit.inference.video import LiveVideoWriter

    path = tmp_path / "camera.mp4"
    writer = LiveVideoWriter(path, nominal_fps=30.0)
    for i in range(frames):
        writer.write(np.full((120, 160, 3), i * 8, np.uint8), t=0.5 + i * 0.1)
    writer.release()
    cap = cv2.VideoCapture(str(path))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0, rel=0.01)
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
    cap.release()


@pytest.mark.parametrize(("option", "name", "message"), [
    ("--csv", "new/frames.csv", "does not exist"),
    ("--plot", "new/emotions.png", "does not exist"),
    ("--out", "new/annotated.mp4", "does not exist"),
    ("--csv", ".", "is a folder"),
])
def test_output_paths_are_checked_before_the_video_is_read(face_video, tmp_path, option, name, message):
    path = tmp_path / name
    proc = subprocess.run([sys.executable, "-m", "ferkit", "video", str(face_video), option, str(path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ferkit: error: {option} {path}: "), proc.stderr
    assert message in proc.stderr and "frames/s" not in proc.stderr  # no frame was analysed
    assert not (tmp_path / "new").exists()


def test_a_face_seen_in_one_frame_is_drawn_as_dots_not_an_empty_panel(tmp_path):
    from ferkit.face import CLASSES
    from ferkit.inference.annotate import CLASS_COLORS
    from ferkit.inference.types import face_from_probs
    from ferkit.inference.video import (
        PANEL_HEIGHT,
        PLOT_LEFT,
        PLOT_RIGHT,
        PLOT_TOP,
        PLOT_WIDTH,
        FaceRecord,
        plot_emotions,
    )

    def probs(main: str, p: float) -> list[float]:
        return [p if c == main else (1 - p) / 6 for c in CLASSES]

    records = [FaceRecord(i, i / 30, 1, face_from_probs(probs("happy", 0.9), None)) for i in range(30)]
    records.append(FaceRecord(15, 0.5, 2, face_from_probs(probs("sad", 0.8), None)))  # one frame only
    path = plot_emotions(records, tmp_path / "emotions.png", rate=30)
    img = cv2.imread(str(path))
    for k, colour in ((0, "happy"), (1, "sad")):  # the long track's panel, then the one-frame one
        top = PLOT_TOP + k * PANEL_HEIGHT + 8
        panel = img[top + 2 : top + PANEL_HEIGHT - 26, PLOT_LEFT + 2 : PLOT_WIDTH - PLOT_RIGHT - 2]
        bgr = np.array(CLASS_COLORS[colour][::-1], np.uint8)
        assert (panel == bgr).all(axis=2).sum() >= 9, f"panel {k + 1}: no {colour} drawn"
