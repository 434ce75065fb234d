"""``ferkit video`` on a 300-frame 640x480 video of a real face moving, made at test time; PyAV's
reading of rotated and other containers, still images refused without FFmpeg's noise."""

from __future__ import annotations

import csv
import subprocess
import sys
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.synthetic import background, moving_face_frames, paste, portrait_face, write_video

from ferkit.cli import main
from ferkit.face import Box
from ferkit.inference.media import VideoReader, VideoWriter, map_ahead, read_ahead
from ferkit.inference.tracking import IouTracker, shifted
from ferkit.inference.video import (
    ROI_MARGIN,
    VideoAnalyzer,
    analyse_video,
    frame_faces,
    gray_around,
    window_around,
)

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
    with VideoReader(out) as cap:
        assert cap.frames == FRAMES and cap.fps == pytest.approx(30)
        shapes = [frame.shape for frame in cap]
    assert len(shapes) == FRAMES and set(shapes) == {(480, 640, 3)}
    assert plot.read_bytes()[:4] == b"\x89PNG" and Image.open(plot).size == (1000, 310)
    assert plot.stat().st_size > 5_000  # lines and text, not a blank page


def test_every_nth_frame_is_analysed_and_the_rest_reuse_it(recognizer, astronaut_png):
    analyzer = VideoAnalyzer(recognizer, every=3)
    frames = islice(moving_face_frames(astronaut_png, FRAMES), 7)
    results = [analyzer.analyse(i, f) for i, f in enumerate(frames)]
    assert [analysed for _, _, analysed in results] == [True, False, False, True, False, False, True]
    assert results[1][0] is results[0][0] and all(ids == [1] for _, ids, _ in results)


def test_missing_camera_is_a_clear_error(capsys):
    pytest.importorskip("cv2", reason="cameras are read through OpenCV")
    assert main(["video", "--camera", "97", "--quiet"]) == 2
    assert "cannot open camera 97" in capsys.readouterr().err


def test_camera_without_opencv_is_a_one_line_error_naming_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now raises ImportError
    assert main(["video", "--camera", "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'ferkit[opencv]'" in err, err


def test_video_without_pyav_is_a_one_line_error_naming_the_extra(astronaut_png, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    assert main(["video", str(astronaut_png), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'ferkit[video]'" in err, err


def test_a_still_image_is_a_one_line_error_without_ffmpeg_noise(astronaut_png, tmp_path):
    """cv2.VideoCapture read a JPEG as a one-frame video and FFmpeg printed "[mjpeg @ 0x...] No JPEG
    data found" for some; ferkit says what the file is and exits 2, nothing else on stderr."""
    jpeg = tmp_path / "photo.jpg"
    Image.open(astronaut_png).convert("RGB").save(jpeg)
    disguised = tmp_path / "photo.mp4"
    disguised.write_bytes(jpeg.read_bytes())
    for path in (jpeg, astronaut_png, disguised):
        proc = subprocess.run([sys.executable, "-m", "ferkit", "video", str(path), "--quiet"],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        want = f"ferkit: error: {path}: a still image, not a video (use ferkit predict for photos)"
        assert lines[0] == want, proc.stderr


def rotate_mp4(path: Path, quarter_turns: int) -> Path:
    """Set the display matrix in an MP4's track header ('tkhd'), as a phone held upright does:
    the frames stay as encoded, players turn them ``quarter_turns`` x 90 degrees clockwise."""
    data = bytearray(path.read_bytes())
    at = data.index(b"tkhd")
    version = data[at + 4]
    matrix_at = at + 4 + 4 + (32 if version == 1 else 20) + 16  # after times, duration, layer..volume
    one, minus = 0x00010000, 0xFFFF0000
    a, b, c, d = {1: (0, one, minus, 0), 2: (minus, 0, 0, minus), 3: (0, minus, one, 0)}[quarter_turns]
    for i, v in enumerate((a, b, 0, c, d, 0, 0, 0, 0x40000000)):
        data[matrix_at + 4 * i : matrix_at + 4 * i + 4] = v.to_bytes(4, "big")
    path.write_bytes(bytes(data))
    return path


def test_rotation_metadata_is_honoured_and_other_containers_read(tmp_path):
    """A landscape-encoded clip whose header says 'turn 90 degrees' comes out portrait, upright;
    MKV, AVI and MOV read like MP4."""
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:8, :8] = (255, 0, 0)  # a red top-left corner
    for suffix in (".mp4", ".mkv", ".avi", ".mov"):
        path = tmp_path / f"clip{suffix}"
        writer = VideoWriter(path, 10, (64, 48))
        for _ in range(5):
            writer.write(frame)
        writer.release()
        with VideoReader(path) as cap:
            frames = list(cap)
        assert len(frames) == 5 and frames[0].shape == (48, 64, 3), suffix
        assert frames[0][2, 2, 0] > 200 and frames[0][2, 2, 1:].max() < 60, suffix
    for turns, corner in ((1, (2, -3)), (2, (-3, -3)), (3, (-3, 2))):  # clockwise: where red goes
        path = rotate_mp4(tmp_path / "clip.mp4", turns)
        with VideoReader(path) as cap:
            first = next(iter(cap))
        assert first.shape == ((64, 48, 3) if turns % 2 else (48, 64, 3)), turns
        assert first[corner][0] > 200 and first[corner][1:].max() < 60, (turns, first[corner])


def test_reading_from_a_frame_seeks_to_exactly_that_frame(tmp_path):
    """``ferkit batch video`` reads ranges: frame k of a range is frame k of the file."""
    path = tmp_path / "count.mp4"
    writer = VideoWriter(path, 25, (64, 48))
    for i in range(120):
        writer.write(np.full((48, 64, 3), 2 * i, np.uint8))
    writer.release()
    with VideoReader(path) as cap:
        everything = [f[:, :, 0].mean() for f in cap]
    for start in (0, 1, 37, 100):
        with VideoReader(path) as cap:
            got = [(i, f[:, :, 0].mean()) for i, f in islice(cap.iter_frames(start), 5)]
        assert [i for i, _ in got] == list(range(start, min(start + 5, 120)))
        assert [v for _, v in got] == pytest.approx(everything[start : start + 5], abs=1.5), start


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
    with VideoReader(path) as cap:
        assert cap.fps == pytest.approx(10.0, rel=0.01)
        assert sum(1 for _ in cap) == frames


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
    img = np.asarray(Image.open(path).convert("RGB"))
    for k, colour in ((0, "happy"), (1, "sad")):  # the long track's panel, then the one-frame one
        top = PLOT_TOP + k * PANEL_HEIGHT + 8
        panel = img[top + 2 : top + PANEL_HEIGHT - 26, PLOT_LEFT + 2 : PLOT_WIDTH - PLOT_RIGHT - 2]
        rgb = np.array(CLASS_COLORS[colour], np.uint8)
        assert (panel == rgb).all(axis=2).sum() >= 9, f"panel {k + 1}: no {colour} drawn"


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


def test_decoding_ahead_gives_the_frames_results_one_by_one_reading_gave(recognizer, face_video, tmp_path):
    """The threads that decode and detect ahead (two detectors on alternate frames) change the
    speed only: every CSV row is what reading, detecting and classifying one frame at a time gives."""
    table = tmp_path / "ahead.csv"
    analyse_video(face_video, recognizer, csv_path=table, progress=False)
    rows = _rows(table)
    with VideoReader(face_video) as cap:
        serial = [frame_faces(recognizer, frame) for frame in cap]
    assert [int(r["frame"]) for r in rows] == list(range(FRAMES))
    for r, faces in zip(rows, serial, strict=True):
        (face,) = faces
        assert face.box is not None and r["label"] == face.label
        assert [int(r[k]) for k in "xywh"] == [face.box.x, face.box.y, face.box.w, face.box.h]
        assert float(r["happy"]) == pytest.approx(face.probabilities["happy"], abs=1e-5)


def test_read_ahead_raises_the_producers_error_where_it_happened_and_stops_its_thread():
    import threading

    def items():
        yield from range(3)
        raise ValueError("corrupt frame 3")

    seen = []
    with pytest.raises(ValueError, match="corrupt frame 3"):
        for item in read_ahead(items(), depth=2):
            seen.append(item)
    assert seen == [0, 1, 2]
    ahead = read_ahead(iter(range(1000)), depth=2)  # the consumer stops early: the thread ends too
    assert next(ahead) == 0
    ahead.close()
    assert not [t for t in threading.enumerate() if t.name == "ferkit-read-ahead"]


def test_map_ahead_keeps_the_order_raises_in_place_and_joins_its_threads():
    """Several detector threads: results in the items' order whatever order they finish in, an
    error raised at its item, and no thread left behind when the consumer stops early."""
    import threading
    import time

    def slow_on_even(i: int) -> int:
        time.sleep(0.004 if i % 2 == 0 else 0.0)  # the even items finish after the odd ones
        if i == 7:
            raise ValueError("bad frame 7")
        return i * i

    seen = []
    with pytest.raises(ValueError, match="bad frame 7"):
        for value in map_ahead(slow_on_even, range(20), workers=3, depth=4):
            seen.append(value)
    assert seen == [i * i for i in range(7)]
    ahead = map_ahead(slow_on_even, range(1000), workers=2, depth=2)
    assert next(ahead) == 0
    ahead.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("ferkit-map-ahead")]


def test_detect_every_n_keeps_the_track_and_the_labels(recognizer, face_video, tmp_path):
    """Full detection on every 5th frame, the face detected again in a window around its track
    in between: the same one face id all the way, a row per frame, labels as detecting every
    frame gives them, and the box and landmarks within a few pixels of the full detector's; with
    the shipped settings and with full detection for unsure labels too."""
    tables = {n: tmp_path / f"every{n}.csv" for n in (1, 5)}
    summaries = {n: analyse_video(face_video, recognizer, csv_path=t, progress=False, detect_every=n)
                 for n, t in tables.items()}
    assert summaries[1].detections == FRAMES
    assert summaries[5].detections < FRAMES and "through the detector" in summaries[5].line()
    every = _rows(tables[1])
    with VideoReader(face_video) as cap:
        frames = list(cap)
    unsure = VideoAnalyzer(recognizer, detect_every=5, roi_min_margin=0.1)  # unsure labels: full detection
    window_rows = [unsure.analyse(i, f)[:2] for i, f in enumerate(frames)]
    assert summaries[5].detections == FRAMES // 5  # the scheduled ones: the face is never lost
    assert FRAMES // 5 <= unsure.detections < FRAMES / 2
    for carried in (_rows(tables[5]), [{"face_id": str(ids[0]), "label": faces[0].label, "frame": str(i),
                                        **faces[0].box.rect(), "nose_x": faces[0].box.landmarks[2][0],
                                        "nose_y": faces[0].box.landmarks[2][1]}
                                       for i, (faces, ids) in enumerate(window_rows)]):
        assert [int(r["frame"]) for r in carried] == list(range(FRAMES))
        assert {r["face_id"] for r in carried} == {"1"}
        agree = sum(a["label"] == b["label"] for a, b in zip(every, carried, strict=True))
        assert agree / FRAMES >= 0.97
        pairs = list(zip(carried, every, strict=True))
        box_off = [max(abs(int(r[k]) - int(ref[k])) for k in "xywh") for r, ref in pairs]
        nose_off = [max(abs(float(r[k]) - float(ref[k])) for k in ("nose_x", "nose_y")) for r, ref in pairs]
        width = int(every[0]["w"])  # about 90 pixels
        assert max(box_off) <= 0.1 * width and np.median(box_off) <= 2
        assert max(nose_off) <= 0.1 * width and np.median(nose_off) <= 1.5


def test_a_cut_is_detected_at_once_not_carried(recognizer, astronaut_png):
    """The face jumps across the picture between two frames (a cut): its window no longer holds
    it, so that frame goes through the full detector and the box lands where the face is."""
    face = portrait_face(astronaut_png, 160)
    frames = []
    for i in range(8):
        frame = background()
        paste(frame, face, 60 if i < 4 else 420, 100 if i < 4 else 260)
        frames.append(frame)
    analyzer = VideoAnalyzer(recognizer, detect_every=20, roi_min_margin=0.0)
    results = [analyzer.analyse(i, f) for i, f in enumerate(frames)]
    assert analyzer.detections == 2  # the first frame and the cut
    (after,), _, _ = results[4]
    assert after.box is not None and after.box.x > 380 and after.box.y > 230


def test_detector_threads_with_detect_every_give_what_a_frame_by_frame_loop_gives(recognizer, astronaut_png,
                                                                                  tmp_path):
    """Cuts make windows fail, and failures bring on full detections soon after (VideoAnalyzer.due),
    which the detector threads run ahead: the CSV is still what analysing one frame at a time
    gives, row for row, with the same frames through the full detector."""
    face = portrait_face(astronaut_png, 160)
    spots = [(60, 100), (420, 260), (250, 40), (100, 280)]
    frames = []
    for i in range(60):
        frame = background()
        x, y = spots[(i // 9) % len(spots)]
        paste(frame, face, x + i % 9 * 3, y + i % 9 * 2)
        frames.append(frame)
    video = write_video(iter(frames), tmp_path / "cuts.mp4", fps=30)
    table = tmp_path / "cuts.csv"
    summary = analyse_video(video, recognizer, csv_path=table, progress=False, detect_every=5)
    with VideoReader(video) as cap:
        decoded = list(cap)
    loop = VideoAnalyzer(recognizer, detect_every=5)
    serial = [loop.analyse(i, f)[:2] for i, f in enumerate(decoded)]
    assert summary.detections == loop.detections > 60 // 5  # the cuts added some
    rows = _rows(table)
    expected = [(i, fid, f.box.rect(), f.label) for i, (faces, ids) in enumerate(serial)
                for f, fid in zip(faces, ids, strict=True)]
    got = [(int(r["frame"]), int(r["face_id"]), {k: int(r[k]) for k in "xywh"}, r["label"]) for r in rows]
    assert got == expected


def test_a_window_detects_the_faces_the_whole_frame_gives(recognizer, astronaut_png):
    """YuNet on part of a frame at the whole frame's scale (the tracker's look around a face):
    over the whole frame it is the full detection, and around each face the same face within
    a few pixels (a few percent of its side)."""
    from support.synthetic import group_photo

    detector = recognizer.detector
    for frame in (group_photo(astronaut_png), *islice(moving_face_frames(astronaut_png, 40), 0, 40, 13)):
        h, w = frame.shape[:2]
        full = detector.detect(frame)
        assert full and detector.detect_region(frame, (0, 0, w, h)) == full
        for box in full:
            (near,) = [b for b in detector.detect_region(frame, window_around(box, ROI_MARGIN, w, h))
                       if abs(b.x - box.x) < box.w / 2]
            assert max(abs(a - b) for a, b in zip(near.rect().values(), box.rect().values())) <= 0.08 * box.w
            assert np.abs(np.subtract(near.landmarks, box.landmarks)).max() <= 0.08 * box.w


def test_a_window_runs_the_network_on_whole_grid_cells_of_the_image(recognizer, astronaut_png, monkeypatch):
    """The network pads its input to its 32-pixel grid: a window ending inside a cell is run with
    the image's own pixels up to the cell's end (what the whole frame's detection sees there),
    not zeros, wherever the frame has them."""
    detector = recognizer.detector
    frame = next(moving_face_frames(astronaut_png, 1))  # 640x480: detection at 320x240
    seen: list[tuple[int, ...]] = []
    raw = detector.detect_raw
    monkeypatch.setattr(detector, "detect_raw", lambda image: seen.append(image.shape[:2]) or raw(image))
    detector.detect_region(frame, (100, 90, 301, 233))  # 50-150 x 45-117 at that scale
    detector.detect_region(frame, (500, 300, 640, 480))  # to the frame's corner: 240 is not on the grid
    assert seen == [(96, 128), (112, 96)]  # rows 32-128, columns 32-160; rows 128-240 (the frame's), 224-320


def test_tracker_carries_boxes_and_landmarks_at_their_velocity():
    marks = ((30.0, 40.0), (50.0, 40.0), (40.0, 50.0), (32.0, 60.0), (48.0, 60.0))
    tracker = IouTracker()
    assert tracker.update([Box(20, 30, 40, 40, marks)], frame=0) == [1]
    moved = tuple((x + 10, y + 4) for x, y in marks)
    assert tracker.update([Box(30, 34, 40, 40, moved)], frame=5) == [1]  # 2 px/frame right, 0.8 down
    ((track_id, box),) = tracker.carried(frame=10)
    assert track_id == 1 and (box.x, box.y, box.w, box.h) == (40, 38, 40, 40)
    assert box.landmarks is not None
    assert np.allclose(box.landmarks, [(x + 20, y + 8) for x, y in marks])


@pytest.mark.parametrize("value", ["0", "-2"])
def test_a_bad_detection_interval_is_a_one_line_error(face_video, capsys, value):
    assert main(["video", str(face_video), "--detect-every", value, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--detect-every" in err[0] and "at least 1" in err[0], err


def test_gray_only_around_the_faces_gives_the_crops_the_whole_gray_frame_gives(recognizer, astronaut_png):
    """Video converts to gray only where the crops read: the crops must not change, for detected
    boxes and for carried ones pushed partly out of the frame (edges repeat there)."""
    from support.synthetic import group_photo

    from ferkit.inference.crop import crop_faces
    from ferkit.inference.detect import to_gray

    frames = [group_photo(astronaut_png), *islice(moving_face_frames(astronaut_png, 40), 0, 40, 7)]
    for frame in frames:
        boxes = recognizer.detector.detect(frame)
        assert boxes
        h, w = frame.shape[:2]
        moved = [shifted(b, dx, dy) for b in boxes for dx, dy in ((-b.x - b.w / 2, 0), (w - b.x - b.w / 3, 5),
                                                                  (3.5, -b.y - 0.8 * b.h), (0, h - b.y))]
        for group in (boxes, moved, [Box(b.x, b.y, b.w, b.h) for b in moved]):  # and without landmarks
            np.testing.assert_array_equal(crop_faces(gray_around(frame, group), group),
                                          crop_faces(to_gray(frame), group))
