"""Inference speed of ferkit (PyTorch and onnxruntime) side by side with the `fer` package.

Measures, with 2 threads everywhere: classifier crops/s at batch 1 and 64 (PyTorch; onnxruntime
as ferkit runs it, chunks of faces on two threads, and on one thread; and the int8 graph of
``ferkit export --quantize int8`` calibrated on ``--calibration`` faces, by default the shared
FER2013 CSV); end-to-end latency (detection + crops + classification) on a 640x480 photo with
three real faces; frames/s over a 300-frame 640x480 video. `fer` runs in its own virtualenv
(``.venv-fer``, made by ``benchmarks/setup_fer_venv.sh``) as a ``benchmarks/fer_reference.py``
subprocess that the throughput and latency measurements alternate with, window by window, so
that both meet the same load from other jobs; without it that column is skipped with the
reason. Writes benchmarks/results/inference.json and .md.

    nice -n 19 .venv/bin/python benchmarks/inference.py
    .venv/bin/python benchmarks/inference.py --smoke   # seconds: 1 round, short windows, 6 frames
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import repo_support  # noqa: F401  (tests/support on the path)
import torch
from repo_support import add_smoke_args, results_dir, write_results
from support.synthetic import group_photo, moving_face_frames, write_video
from timing import cpu_flags, cpu_model, window_rate

from ferkit import imageops
from ferkit.inference import Recognizer
from ferkit.inference.detect import make_detector
from ferkit.inference.video import BUSY_FRAMES, DETECT_SIDE, PLAN_LAG, ROI_MIN_MARGIN, analyse_video

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
FER_PYTHON = REPO / ".venv-fer" / "bin" / "python"
THREADS = 2
RUNTIMES = ("torch", "onnx", "onnx_1thread", "onnx_int8")


def call_times_ms(fn, runs: int) -> list[float]:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def rate_stats(rates: list[float]) -> dict[str, float]:
    """Best window (the least disturbed by other jobs) and the mean over windows."""
    return {"best": max(rates), "mean": sum(rates) / len(rates), "windows": len(rates)}


def latency_stats(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {"min": times[0], "median": times[len(times) // 2], "runs": len(times)}


class FerClient:
    """benchmarks/fer_reference.py running in .venv-fer: one JSON request, one JSON reply."""

    def __init__(self) -> None:
        self._log = tempfile.TemporaryFile("w+")
        self._proc = subprocess.Popen(
            [str(FER_PYTHON), str(REPO / "benchmarks" / "fer_reference.py")], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._log, text=True,
        )
        self.ask_raw()  # the "ready" line, once TensorFlow and both fer models are loaded

    def ask_raw(self) -> dict:
        line = self._proc.stdout.readline()
        if not line:
            self._log.seek(0)
            raise RuntimeError("fer_reference.py stopped: " + " ".join(self._log.read().splitlines()[-1:]))
        return json.loads(line)

    def ask(self, **request) -> dict:
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        return self.ask_raw()

    def close(self) -> None:
        self._proc.stdin.close()
        self._proc.wait(timeout=60)
        self._log.close()


def start_fer() -> FerClient | str:
    """A running fer, or the reason there is none (the fer column is then skipped)."""
    if not FER_PYTHON.exists():
        return f"{FER_PYTHON} not found: run benchmarks/setup_fer_venv.sh to compare with fer"
    try:
        return FerClient()
    except (OSError, RuntimeError, json.JSONDecodeError) as exc:
        return f"fer could not start: {exc}"


def concurrent_training() -> list[str]:
    """Command lines of other running `ferkit train` processes (they share the CPU with us)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            except OSError:
                continue
            if "ferkit" in cmd and " train" in cmd:
                found.append(cmd)
    return found


def model_cost(name: str) -> dict:
    """Parameters and multiply-adds per 48x48 face of a model (convolutions + linear)."""
    from ferkit.models.io import load_model
    from ferkit.models.summary import count_multiply_adds

    model, _ = load_model(name)
    return {"model_params": sum(p.numel() for p in model.parameters()),
            "model_mmacs": count_multiply_adds(model) / 1e6}


def int8_graph(model: str, calibration: Path, folder: Path) -> Path | str:
    """The model's shipped int8 graph (``--backend onnx-int8``), else ``ferkit export --quantize
    int8`` of it, or the reason it cannot be made."""
    from ferkit.errors import FerkitError
    from ferkit.models.store import resolve
    from ferkit.runtime.export import export_model

    shipped = resolve(model).int8_graph
    if shipped is not None:
        return shipped
    if not calibration.exists():
        return f"{calibration} not found: no calibration faces for the int8 graph"
    try:
        return export_model(model, "onnx", folder / "int8.onnx", quantize="int8", calibration=calibration)
    except FerkitError as exc:
        return str(exc)


def measure(model: str, photo: np.ndarray, photo_path: Path, video: Path, rounds: int,
            window: float, runs: int, int8: Path | str) -> tuple[dict, dict]:
    """ferkit's and fer's numbers, measured in alternation (a window of one, then of the other,
    for ``rounds`` rounds) so that both meet the same load from other jobs."""
    torch.set_num_threads(THREADS)
    recs = {name: Recognizer(model, backend=name, threads=THREADS) for name in ("torch", "onnx")}
    # One thread: the like of fer's TFLite path, and the least hurt when other jobs hold the cores.
    recs["onnx_1thread"] = Recognizer(model, backend="onnx", threads=1)
    if isinstance(int8, Path):  # the int8 graph against fer's int8 TFLite model
        recs["onnx_int8"] = Recognizer(str(int8), backend="onnx", threads=THREADS)
    fer = start_fer()
    if isinstance(fer, str):
        print(f"fer: skipped ({fer})", file=sys.stderr)
    rng = np.random.default_rng(0)
    crops = {1: rng.integers(0, 256, (1, 48, 48), np.uint8), 64: rng.integers(0, 256, (64, 48, 48), np.uint8)}
    # Each ferkit runtime alternates with one of fer's (None: with nothing).
    pairs = [("torch", "keras"), ("onnx", "tflite"), ("onnx_1thread", None), ("onnx_int8", "tflite")]
    pairs = [(ours, theirs) for ours, theirs in pairs if ours in recs]
    rates: dict[str, list[float]] = {}
    times: dict[str, list[float]] = {}
    fer_faces: dict[str, int] = {}
    for _ in range(rounds):
        for ours_name, fer_name in pairs:
            rec = recs[ours_name]
            for batch, faces in crops.items():
                rates.setdefault(f"{ours_name}_batch{batch}", []).append(
                    window_rate(lambda r=rec, f=faces: r.classify(f), batch, window))
                if fer_name and not isinstance(fer, str):
                    looped = fer_name == "tflite" and batch > 1  # fer's TFLite path loops per face
                    key = f"{fer_name}_batch{batch}" + ("_looped" if looped else "")
                    reply = fer.ask(task="crops", model=fer_name, batch=batch, seconds=window)
                    rates.setdefault(f"fer_{key}", []).append(reply["rate"])
            times.setdefault(ours_name, []).extend(call_times_ms(lambda r=rec: r.predict(photo), runs))
            if fer_name and not isinstance(fer, str):
                reply = fer.ask(task="photo", model=fer_name, path=str(photo_path), runs=runs)
                times.setdefault(f"fer_{fer_name}", []).extend(reply["ms"])
                fer_faces[fer_name] = reply["faces"]
    ours = {"model": recs["onnx"].model_name, **model_cost(model), "detector": repr(recs["onnx"].detector),
            "video_detector": repr(make_detector("yunet", max_side=DETECT_SIDE)),
            "crops_per_s": {k: rate_stats(v) for k, v in rates.items() if not k.startswith("fer_")},
            "photo_latency_ms": {k: latency_stats(v) for k, v in times.items() if not k.startswith("fer_")},
            "photo_faces": len(recs["onnx"].predict(photo).faces), "video": video_runs(model, video),
            "int8": "measured" if isinstance(int8, Path) else f"skipped: {int8}"}
    if isinstance(fer, str):
        return ours, {"skipped": fer}
    theirs = {**fer.ask(task="info"),
              "crops_per_s": {k[4:]: rate_stats(v) for k, v in rates.items() if k.startswith("fer_")},
              "photo_latency_ms": {k[4:]: latency_stats(v) for k, v in times.items() if k.startswith("fer_")},
              "photo_faces": fer_faces, "video": fer.ask(task="video", path=str(video))}
    fer.close()
    return ours, theirs


def video_runs(model: str, video: Path) -> dict:
    """Frames/s of ``ferkit video`` on the test video: both runtimes, and with outputs written."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, backend, files in (("onnx", "onnx", False), ("torch", "torch", False),
                                     ("onnx_with_outputs", "onnx", True)):
            rec = Recognizer(model, detector=make_detector("yunet", max_side=DETECT_SIDE), backend=backend,
                             threads=THREADS)
            outputs = {"out": Path(tmp) / "a.mp4", "csv_path": Path(tmp) / "a.csv"} if files else {}
            summary = analyse_video(video, rec, progress=False, **outputs)
            out[name] = {"frames": summary.frames, "faces": summary.faces, "fps": summary.fps}
    return out


# ---------------------------------------------------------------- video: bars, profile, agreement
# Frames per second on 640x480 video with every frame analysed, detecting on every frame and
# every N-th frame (--detect-every), against fer's per-frame loop on the same files, alternated
# round by round; where the time goes per frame; how often --detect-every N gives the labels
# detecting every frame gives, on a video made from real web photos.

VIDEO_SIZE = (640, 480)
DETECT_INTERVALS = (2, 3, 5, 10)  # the agreement is measured for each; speed for SPEED_INTERVAL
SPEED_INTERVAL = 5
# Label margins tried on the WIDER montage (the development video) at SPEED_INTERVAL: a followed
# frame with a face whose two top probabilities are closer than this goes through the full
# detector. The smallest that keeps 97% agreement there (the fewest full detections) is the one
# video.py should ship; 0.0 is the window alone.
MARGIN_CANDIDATES = (0.0, 0.02, 0.05, 0.1, 0.2)
UNSURE_MARGIN = 0.1  # the ExpW-dev agreement is also measured with this margin, for comparison
MONTAGE_SHOTS, MONTAGE_SHOT_FRAMES = 20, 30
MIN_FACE = 48  # labelled face width (photo pixels) for a photo to be used in the montage


def montage_photos(expw: Path, count: int) -> list[tuple[Path, list[tuple[int, int, int, int]]]]:
    """``count`` ExpW-dev photos spread over the sorted list (every k-th of those whose labelled
    faces are all at least MIN_FACE wide), each with its labelled boxes."""
    boxes: dict[str, list[tuple[int, int, int, int]]] = {}
    with open(expw / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            boxes.setdefault(row["image"], []).append(tuple(int(row[k]) for k in "xywh"))
    usable = sorted(name for name, faces in boxes.items() if min(b[2] for b in faces) >= MIN_FACE)
    step = max(1, len(usable) // count)
    return [(expw / "images" / name, boxes[name]) for name in usable[::step][:count]]


def wider_photos(wider: Path, count: int) -> list[tuple[Path, list[tuple[int, int, int, int]]]]:
    """``count`` WIDER-val200 photos spread over the sorted list (those with a face at least
    MIN_FACE wide), each with its boxes, largest first (the pan ends on it)."""
    boxes: dict[str, list[tuple[int, int, int, int]]] = {}
    with open(wider / "boxes.csv", newline="") as f:
        for row in csv.DictReader(f):
            boxes.setdefault(row["image"], []).append(tuple(round(float(row[k])) for k in "xywh"))
    usable = sorted(name for name, faces in boxes.items() if max(b[2] for b in faces) >= MIN_FACE)
    step = max(1, len(usable) // count)
    return [(wider / "images" / name, sorted(boxes[name], key=lambda b: -b[2]))
            for name in usable[::step][:count]]


def photo_montage(photos: list[tuple[Path, list]], frames_per_shot: int, seed: int = 0,
                  ) -> Iterator[np.ndarray]:
    """640x480 RGB frames: one shot per photo, cut to the next; in each, the camera pans from a
    random point of the photo towards its first labelled face (faces enter and leave the
    picture; the view stays inside the photo), zooms in or out by up to 35% and rolls by up to
    8 degrees (faces turn), all smoothly. Deterministic."""
    rng = np.random.default_rng(seed)
    out_w, out_h = VIDEO_SIZE
    for path, faces in photos:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        cover = max(out_w / w, out_h / h)
        x, y, bw, bh = faces[0]
        end = np.array([x + bw / 2, y + bh / 2], float)
        start = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        zoom0, zoom1 = rng.uniform(1.0, 1.35, 2)
        roll = rng.uniform(-8, 8)
        for i in range(frames_per_shot):
            t = i / max(1, frames_per_shot - 1)
            t = t * t * (3 - 2 * t)  # ease in and out
            scale = cover * (zoom0 + (zoom1 - zoom0) * t)
            half = np.array([out_w, out_h]) / (2 * scale)  # the view stays inside the photo
            centre = np.clip(start + (end - start) * t, half, np.array([w, h]) - half)
            matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), roll * t, scale)
            matrix[:, 2] += np.array([out_w / 2, out_h / 2]) - centre
            yield cv2.warpAffine(rgb, matrix, VIDEO_SIZE, flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)  # the roll's corners


def video_recognizer(model: str) -> Recognizer:
    """The recognizer ``ferkit video`` builds (YuNet capped at DETECT_SIDE, onnxruntime)."""
    return Recognizer(model, detector=make_detector("yunet", max_side=DETECT_SIDE), threads=THREADS)


def video_speed(model: str, videos: dict[str, Path], fer: FerClient | str, rounds: int) -> dict:
    """Frames/s of ferkit (detecting every frame; every SPEED_INTERVAL-th; every frame with the CSV
    and annotated video written) and of fer's loop, per video, alternated round by round."""
    rec = video_recognizer(model)
    runs = (("ferkit_detect_every_1", 1, False),
            (f"ferkit_detect_every_{SPEED_INTERVAL}", SPEED_INTERVAL, False),
            ("ferkit_detect_every_1_with_outputs", 1, True))
    out: dict = {name: {} for name in videos}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for name, video in videos.items():
                for run, n, written in runs:
                    files = {"out": Path(tmp) / "a.mp4", "csv_path": Path(tmp) / "a.csv"} if written else {}
                    s = analyse_video(video, rec, progress=False, detect_every=n, **files)
                    entry = out[name].setdefault(run, {"frames": s.frames, "faces": s.faces, "fps": []})
                    entry["fps"].append(s.fps)
                    entry["detections"] = s.detections
                if not isinstance(fer, str):
                    reply = fer.ask(task="video", path=str(video))
                    entry = out[name].setdefault("fer", {"frames": reply["frames"], "faces": reply["faces"],
                                                         "fps": []})
                    entry["fps"].append(reply["fps"])
    for runs_of_video in out.values():
        for entry in runs_of_video.values():
            entry["fps"] = rate_stats(entry["fps"])
        if "fer" in runs_of_video:
            fer_fps = runs_of_video["fer"]["fps"]
            for run, entry in runs_of_video.items():
                if run != "fer":
                    entry["speedup_vs_fer"] = entry["fps"]["best"] / fer_fps["best"]
                    entry["speedup_vs_fer_mean"] = entry["fps"]["mean"] / fer_fps["mean"]
    return out


def stage_profile(model: str, video: Path) -> dict[str, float]:
    """Milliseconds per frame of each stage of ``ferkit video``, run one after the other on one
    thread (the threaded run overlaps decoding and detection with the rest): decode to RGB,
    detection (YuNet's resize, network, decoding), gray conversion around the faces, aligned crops,
    classification, tracking, annotation, and encoding the annotated video; apart, the resize
    inside detection and the window detections that replace it between full detections."""
    from ferkit.inference import annotate
    from ferkit.inference.crop import crop_faces
    from ferkit.inference.media import VideoReader, VideoWriter
    from ferkit.inference.video import (
        ROI_MARGIN,
        classify_crops,
        gray_around,
        make_tracker,
        window_around,
        window_boxes,
    )

    rec = video_recognizer(model)
    detector = rec.detector
    assert detector is not None
    tracker = make_tracker(1)
    names = ("decode", "detect", "gray", "crop", "classify", "track", "annotate", "encode")
    spent = dict.fromkeys((*names, "detect_resize", "window_detect"), 0.0)
    frames = 0
    with tempfile.TemporaryDirectory() as tmp, VideoReader(video) as cap:
        writer = VideoWriter(Path(tmp) / "a.mp4", cap.fps, VIDEO_SIZE)
        decoded = iter(cap)
        while True:
            marks = [time.perf_counter()]
            frame = next(decoded, None)
            if frame is None:
                break
            marks.append(time.perf_counter())
            boxes = detector.detect(frame)
            marks.append(time.perf_counter())
            gray = gray_around(frame, boxes)
            marks.append(time.perf_counter())
            crops = crop_faces(gray, boxes)
            marks.append(time.perf_counter())
            faces = classify_crops(rec, boxes, crops)
            marks.append(time.perf_counter())
            ids = tracker.update(boxes)
            marks.append(time.perf_counter())
            annotated = annotate.draw_faces(frame, faces, ids)
            marks.append(time.perf_counter())
            writer.write(annotated)
            marks.append(time.perf_counter())
            for name, a, b in zip(names, marks[:-1], marks[1:], strict=True):
                spent[name] += b - a
            # the part of "detect" that is YuNetDetector's resize to its side, timed on its own
            side = getattr(detector, "side", None) or max(frame.shape[:2])
            scale = side / max(frame.shape[:2])
            start = time.perf_counter()
            imageops.resize(frame, (round(frame.shape[1] * scale), round(frame.shape[0] * scale)), "area")
            spent["detect_resize"] += time.perf_counter() - start
            start = time.perf_counter()  # and what a frame between full detections spends instead
            for box in boxes:
                window_boxes(detector, frame, window_around(box, ROI_MARGIN, *VIDEO_SIZE))
            spent["window_detect"] += time.perf_counter() - start
            frames += 1
        writer.release()
    return {name: 1000 * s / max(1, frames) for name, s in spent.items()} | {"frames": frames}


def label_agreement(model: str, video: Path, runs: list[tuple[int, float]]) -> dict:
    """For each (interval N, label margin): of the face-frames detecting every frame
    finds, the share that --detect-every N also has (a box with IoU >= 0.5) with the same label,
    and the share it has at all; its frames through the detector; faces it has that every-frame
    detection lacks. Also how often detecting every frame changes a tracked face's label from
    one frame to the next (the noise any carrying meets)."""
    from ferkit.inference.media import VideoReader
    from ferkit.inference.tracking import iou
    from ferkit.inference.video import VideoAnalyzer

    rec = video_recognizer(model)
    with VideoReader(video) as cap:
        frames = list(cap)

    def run(n: int, diff: float) -> tuple[list[tuple[list, list[int]]], int]:
        analyzer = VideoAnalyzer(rec, detect_every=n, roi_min_margin=diff)
        return [analyzer.analyse(i, f)[:2] for i, f in enumerate(frames)], analyzer.detections

    reference, _ = run(1, ROI_MIN_MARGIN)
    total = sum(len(faces) for faces, _ in reference)
    flips = pairs = 0
    for (faces0, ids0), (faces1, ids1) in zip(reference, reference[1:]):
        before = {i: f.label for i, f in zip(ids0, faces0, strict=True)}
        for i, f in zip(ids1, faces1, strict=True):
            if i in before:
                pairs += 1
                flips += before[i] != f.label
    out: dict = {"face_frames": total, "frames": len(reference),
                 "every_frame_label_changes": flips / max(1, pairs), "runs": []}
    for n, diff in runs:
        ours, detections = run(n, diff)
        agree = found = extra = 0
        for (ref, _), (faces, _) in zip(reference, ours, strict=True):
            free = list(faces)
            for face in ref:
                match = max(free, key=lambda o, f=face: iou(o.box, f.box), default=None)
                if match is None or iou(match.box, face.box) < 0.5:
                    continue
                free.remove(match)
                found += 1
                agree += match.label == face.label
            extra += len(free)
        out["runs"].append({"detect_every": n, "roi_min_margin": diff, "agreement": agree / max(1, total),
                            "found": found / max(1, total), "extra_faces": extra, "detections": detections,
                            "bar_97_met": agree / max(1, total) >= 0.97})
    return out


def window_fidelity(model: str, video: Path) -> dict:
    """What a window gives on the very frame the full detector ran on (no motion, no tracker):
    for each face the full detection finds, YuNet on the window :data:`ROI_MARGIN` around its
    box; the share of faces found there (IoU >= ROI_MIN_IOU), found with the very same box, and
    found with the label the full detection's crop gets; the landmarks' largest offset (median
    and 90th percentile, pixels) and the window's cost per face. The upper bound of what
    --detect-every's windows can keep, before any motion."""
    from ferkit.inference.crop import crop_faces
    from ferkit.inference.media import VideoReader
    from ferkit.inference.tracking import iou
    from ferkit.inference.video import (
        ROI_MARGIN,
        ROI_MIN_IOU,
        classify_crops,
        gray_around,
        window_around,
        window_boxes,
    )

    rec = video_recognizer(model)
    detector = rec.detector
    assert detector is not None
    total = found = same_box = same_label = 0
    offsets: list[float] = []
    seconds = 0.0
    with VideoReader(video) as cap:
        for frame in cap:
            h, w = frame.shape[:2]
            boxes = detector.detect(frame)
            reference = classify_crops(rec, boxes, crop_faces(gray_around(frame, boxes), boxes))
            for box, ref in zip(boxes, reference, strict=True):
                total += 1
                start = time.perf_counter()
                near = window_boxes(detector, frame, window_around(box, ROI_MARGIN, w, h))
                seconds += time.perf_counter() - start
                best = max(near, key=lambda b, box=box: iou(b, box), default=None)
                if best is None or iou(best, box) < ROI_MIN_IOU:
                    continue
                found += 1
                same_box += best == box
                offsets.append(float(np.abs(np.subtract(best.landmarks, box.landmarks)).max()))
                (face,) = classify_crops(rec, [best], crop_faces(gray_around(frame, [best]), [best]))
                same_label += face.label == ref.label
    return {"faces": total, "found": found / max(1, total), "same_box": same_box / max(1, total),
            "same_label": same_label / max(1, total),
            "same_label_of_found": same_label / max(1, found),
            "landmark_offset_px": {"median": float(np.median(offsets)) if offsets else None,
                                   "p90": float(np.percentile(offsets, 90)) if offsets else None},
            "window_ms_per_face": 1000 * seconds / max(1, total)}


def video_bars(model: str, portrait: Path, shared: Path, folder: Path, frames: int, shots: int,
               shot_frames: int, rounds: int) -> dict:
    """The video section: speed against fer on the moving-face clip and the photo montage, the
    per-stage profile, the label margin chosen on a WIDER montage, and the agreement of
    --detect-every N on the ExpW-dev montage (measured, never tuned on)."""
    expw, wider = shared / "data" / "expw-dev", shared / "data" / "widerface-val200"
    videos = {"moving_face": write_video(moving_face_frames(portrait, frames), folder / "moving_face.mp4")}
    montage: dict = {}
    if (expw / "labels.csv").exists():
        photos = montage_photos(expw, shots)
        videos["photo_montage"] = write_video(photo_montage(photos, shot_frames), folder / "montage.mp4")
        montage["expw"] = {"photos": [p.name for p, _ in photos], "shots": len(photos),
                           "frames_per_shot": shot_frames}
    if (wider / "boxes.csv").exists():
        photos = wider_photos(wider, shots)
        montage["wider"] = {"photos": [p.name for p, _ in photos], "shots": len(photos),
                            "frames_per_shot": shot_frames}
        wider_video = write_video(photo_montage(photos, shot_frames), folder / "wider.mp4")
        choice = label_agreement(model, wider_video, [(SPEED_INTERVAL, m) for m in MARGIN_CANDIDATES])
        passing = [r["roi_min_margin"] for r in choice["runs"] if r["bar_97_met"]]
        choice["chosen"] = min(passing) if passing else max(MARGIN_CANDIDATES)
        choice["shipped"] = ROI_MIN_MARGIN
        fidelity = {"wider": window_fidelity(model, wider_video)}
    else:
        choice = {"skipped": f"{wider} not found"}
        fidelity = {}
    if "photo_montage" in videos:
        fidelity["expw"] = window_fidelity(model, videos["photo_montage"])
    fer = start_fer()
    if isinstance(fer, str):
        print(f"fer: skipped ({fer})", file=sys.stderr)
    try:
        speed = video_speed(model, videos, fer, rounds)
        fer_info = fer.ask(task="info") if not isinstance(fer, str) else {"skipped": fer}
    finally:
        if not isinstance(fer, str):
            fer.close()
    runs = [(n, ROI_MIN_MARGIN) for n in DETECT_INTERVALS] + [(SPEED_INTERVAL, UNSURE_MARGIN)]
    agreement = label_agreement(model, videos["photo_montage"], runs) if "photo_montage" in videos else {}
    return {"speed": speed, "fer": fer_info, "montage": montage, "threshold_choice": choice,
            "agreement": agreement, "window_fidelity": fidelity,
            "profile_ms_per_frame": {name: stage_profile(model, v) for name, v in videos.items()},
            "roi_min_margin": ROI_MIN_MARGIN}


def _agreement_rows(agreement: dict) -> list[str]:
    return [f"| {a['detect_every']} | {a['roi_min_margin']} | {100 * a['agreement']:.2f}% "
            f"({'met' if a['bar_97_met'] else 'NOT met'}) | {100 * a['found']:.2f}% | {a['extra_faces']} | "
            f"{a['detections']} of {agreement['frames']} |" for a in agreement["runs"]]


def video_markdown(result: dict) -> str:
    """benchmarks/results/inference_video.md."""
    env, video = result["environment"], result["video"]
    lines = ["# Video speed: ferkit video vs fer, and what --detect-every costs", "",
             f"Command: `{result['command']}`  ", f"Date: {result['date']}  ",
             f"Machine: {env['cpu_model']} ({', '.join(env['cpu_flags'])}), {env['cpus']} CPUs; load average "
             f"before {', '.join(f'{x:.2f}' for x in env['load_before'])}, after "
             f"{', '.join(f'{x:.2f}' for x in env['load_average'])} (other jobs share the machine)  ",
             f"fer: {video['fer'].get('fer', video['fer'].get('skipped'))}", "",
             "640x480, every frame analysed; ferkit and fer alternated run by run. Cells: best run "
             "(mean over runs), frames/s, and the ratio to fer's.", ""]
    for name, runs in video["speed"].items():
        lines += [f"## {name.replace('_', ' ')}: {next(iter(runs.values()))['frames']} frames", "",
                  "| pipeline | frames through the detector | faces | frames/s | x fer |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for run, e in runs.items():
            ratio = (f"{e['speedup_vs_fer']:.2f} ({e['speedup_vs_fer_mean']:.2f})" if "speedup_vs_fer" in e
                     else "")
            label = "fer (detect_emotions on each frame)" if run == "fer" else run.replace("_", " ")
            lines.append(f"| {label} | {e.get('detections', e['frames'])} | {e['faces']} | "
                         f"{e['fps']['best']:.1f} ({e['fps']['mean']:.1f}) | {ratio} |")
        lines.append("")
    stages = [k for k in next(iter(video["profile_ms_per_frame"].values())) if k != "frames"]
    lines += ["## Where the time goes (ms per frame, stages run one after the other on one thread)", "",
              "detect resize: the part of detect that is the resize to YuNet's side; window detect: YuNet "
              "on a window twice each face's box, what --detect-every N does between full detections "
              "(both timed apart).", "",
              "| video | " + " | ".join(n.replace("_", " ") for n in stages) + " | sum of the first eight |",
              "| --- |" + " ---: |" * (len(stages) + 1)]
    for name, prof in video["profile_ms_per_frame"].items():
        total = sum(v for k, v in prof.items() if k not in ("frames", "detect_resize", "window_detect"))
        lines.append(f"| {name.replace('_', ' ')} | " + " | ".join(f"{prof[k]:.2f}" for k in stages)
                     + f" | {total:.2f} |")
    choice, agreement, montage = video["threshold_choice"], video["agreement"], video["montage"]
    header = ("| N | full detection under margin | same label (bar >= 97%) | face found | extra faces "
              "| frames through the full detector |")
    if "runs" in choice:
        lines += ["", "## Label margin, chosen on a WIDER-val200 montage "
                  f"({montage['wider']['shots']} photos, {choice['frames']} frames, "
                  f"{choice['face_frames']} face-frames)", "",
                  f"Detecting every frame changes a tracked face's label from one frame to the next "
                  f"{100 * choice['every_frame_label_changes']:.1f}% of the time. Between full detections "
                  "each face is detected again in a window twice its box; a frame where a face is not "
                  "found there, or its two top probabilities are closer than the margin, goes through the "
                  f"full detector, and so do the {BUSY_FRAMES} x N frames from {PLAN_LAG} after it (on the "
                  f"detector threads). Smallest margin keeping 97% at N={SPEED_INTERVAL}: {choice['chosen']} "
                  f"(video.py ships {choice['shipped']}).", "",
                  header, "| ---: | ---: | ---: | ---: | ---: | ---: |", *_agreement_rows(choice)]
    fidelity = video.get("window_fidelity", {})
    if fidelity:
        lines += ["", "## A window on the frame the full detector ran on (no motion)", "",
                  "For each face the full detection finds, YuNet on the window twice its box around "
                  "that very box: how often it finds the face, with the very same box, and with the label "
                  "the full detection's crop gets. This bounds what the windows between full detections can "
                  "keep before anything moves: the network sees zeros beyond the window, the box and "
                  "landmarks move by a pixel or so, and that changes some labels.", "",
                  "| montage | faces | found | same box | same label | same label, of those found | landmark "
                  "offset px, median (p90) | window ms per face |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for name, f in fidelity.items():
            off = f["landmark_offset_px"]
            lines.append(f"| {'WIDER-val200' if name == 'wider' else 'ExpW-dev'} | {f['faces']} | "
                         f"{100 * f['found']:.1f}% | {100 * f['same_box']:.1f}% | "
                         f"{100 * f['same_label']:.1f}% | "
                         f"{100 * f['same_label_of_found']:.1f}% | {off['median']:.2f} ({off['p90']:.2f}) | "
                         f"{f['window_ms_per_face']:.2f} |")
    if agreement:
        lines += ["", f"## --detect-every N against detecting every frame: ExpW-dev montage "
                  f"({montage['expw']['shots']} photos, {montage['expw']['frames_per_shot']} frames each: "
                  f"pans, zooms, roll, cuts; {agreement['face_frames']} face-frames; measured, not tuned "
                  "on)", "",
                  f"Detecting every frame changes a tracked face's label from one frame to the next "
                  f"{100 * agreement['every_frame_label_changes']:.1f}% of the time.", "",
                  header, "| ---: | ---: | ---: | ---: | ---: | ---: |", *_agreement_rows(agreement)]
    return "\n".join(lines) + "\n"


def training_slice(data: Path, out: Path, rows: int) -> Path:
    """The first ``rows`` Training rows of the challenge CSV (real faces), written to ``out``: the
    int8 calibration sample of --smoke."""
    opener = gzip.open if data.name.endswith(".gz") else open
    with opener(data, "rt") as src, open(out, "w") as dst:
        dst.write(src.readline())
        for line in src:
            if line.rstrip().rsplit(",", 1)[1] == "Training":
                dst.write(line)
                rows -= 1
                if not rows:
                    break
    return out


def compare(ours: dict, fer: dict) -> dict:
    """The two bars, against each of fer's two classifiers (Keras, batched; TFLite, its default):
    ferkit's onnxruntime crops/s at batch 64 >= 2x fer's best batch, and its 3-face photo latency
    <= half of fer's. Compared on best windows and minimum latencies (the least disturbed by
    other jobs), with the mean/median ratios beside them."""
    if "skipped" in fer:
        return {}
    out: dict = {}
    ours_latency = ours["photo_latency_ms"]["onnx"]
    for name in ("keras", "tflite"):
        rates = [v for k, v in fer["crops_per_s"].items() if k.startswith(name)]
        fer_rate = {stat: max(r[stat] for r in rates) for stat in ("best", "mean")}
        fer_latency = fer["photo_latency_ms"][name]
        ratio = ours_latency["min"] / fer_latency["min"]
        out[name] = {
            "latency_ratio": ratio, "latency_ratio_median": ours_latency["median"] / fer_latency["median"],
            "latency_bar_half_met": ratio <= 0.5,
        }
        for runtime in ("onnx", "onnx_1thread", "onnx_int8"):
            if f"{runtime}_batch64" not in ours["crops_per_s"]:
                continue
            ours_rate = ours["crops_per_s"][f"{runtime}_batch64"]
            speedup = ours_rate["best"] / fer_rate["best"]
            out[name][runtime] = {"crops_speedup": speedup,
                                  "crops_speedup_mean": ours_rate["mean"] / fer_rate["mean"],
                                  "crops_bar_2x_met": speedup >= 2}
    out["video_speedup"] = ours["video"]["onnx"]["fps"] / fer["video"]["fps"]
    return out


def _rate(r: dict) -> str:
    return f"{r['best']:.0f} ({r['mean']:.0f})"


def _latency(r: dict) -> str:
    return f"{r['min']:.1f} ({r['median']:.1f})"


def _header(result: dict) -> list[str]:
    env, ours = result["environment"], result["ferkit"]
    training = env["concurrent_training"]
    return ["# Inference speed: ferkit vs fer", "",
            f"Command: `{result['command']}`  ", f"Date: {result['date']}  ",
            f"Machine: {env.get('cpu_model', 'CPU')} "
            f"({', '.join(env.get('cpu_flags', [])) or 'flags not recorded'}), "
            f"{env['cpus']} CPUs, {env['threads']} threads per "
            "runtime; "
            f"torch {env['torch']}, "
            f"onnxruntime {env['onnxruntime']}; model `{ours['model']}` ({ours['model_params']:,} "
            f"parameters, {ours['model_mmacs']:.0f} M multiply-adds per face); detector "
            f"{ours.get('detector', 'HaarDetector')} (video: "
            f"{ours.get('video_detector', 'HaarDetector')}).  ",
            (f"fer {result['fer']['fer']} (TensorFlow {result['fer']['tensorflow']}), emotion model "
             f"{result['fer']['model_params']:,} parameters, {result['fer']['model_mmacs']:.0f} M "
             "multiply-adds per 64x64 face.  " if "fer" in result["fer"] else ""),
            "Concurrent training: " + (
                f"**yes**: {len(training)} `ferkit train` process(es) ran at the same time, this at "
                f"nice {env.get('niceness', 19)} (load average "
                + ", ".join(f"{x:.1f}" for x in env["load_average"])
                + "): absolute numbers are low and noisy; ratios are what count" if training else "no"),
            "", "ferkit and fer measured in alternation, window by window. Throughput cells: best window "
            "(mean over windows). Latency cells: minimum (median).", ""]


def markdown(result: dict) -> str:
    ours, fer = result["ferkit"], result["fer"]
    lines = _header(result)
    fer_rates = fer.get("crops_per_s", {})
    lines += ["## Classifier crops/s", "", "| runtime | batch 1 | batch 64 |", "| --- | ---: | ---: |"]
    for name in RUNTIMES:
        rates = ours["crops_per_s"]
        if f"{name}_batch1" not in rates:
            continue
        lines.append(f"| ferkit {name.replace('_', ', ')} (48x48) | {_rate(rates[f'{name}_batch1'])} "
                     f"| {_rate(rates[f'{name}_batch64'])} |")
    if fer_rates:
        lines.append(f"| fer Keras (64x64, batched) | {_rate(fer_rates['keras_batch1'])} "
                     f"| {_rate(fer_rates['keras_batch64'])} |")
        lines.append(f"| fer TFLite int8, its default (64x64, one face per call) "
                     f"| {_rate(fer_rates['tflite_batch1'])} | {_rate(fer_rates['tflite_batch64_looped'])} |")
    lines += ["", "## End-to-end: 640x480 photo, 3 faces (detection + crops + classification), ms", "",
              "| pipeline | faces found | latency ms |", "| --- | ---: | ---: |"]
    for name in [n for n in RUNTIMES if n in ours["photo_latency_ms"]]:
        latency = _latency(ours["photo_latency_ms"][name])
        lines.append(f"| ferkit {name.replace('_', ', ')} | {ours['photo_faces']} | {latency} |")
    if fer_rates:
        for name in ("keras", "tflite"):
            latency = _latency(fer["photo_latency_ms"][name])
            lines.append(f"| fer {name} | {fer['photo_faces'][name]} | {latency} |")
    frames = ours["video"]["onnx"]["frames"]
    lines += ["", f"## Video: {frames} frames of 640x480, every frame analysed", "",
              "| pipeline | frames/s |", "| --- | ---: |"]
    for name, v in ours["video"].items():
        lines.append(f"| ferkit {name.replace('_', ' ')} | {v['fps']:.1f} |")
    if fer_rates:
        lines.append(f"| fer (TFLite, detect_emotions on each frame) | {fer['video']['fps']:.1f} |")
    if "skipped" in fer:
        lines += ["", f"fer: skipped ({fer['skipped']})"]
    comparison = result["comparison"]
    if comparison:
        lines += ["", "## Bars (ferkit onnxruntime vs fer)", "",
                  "| fer classifier | ferkit runtime | crops/s ratio at batch 64, bar >= 2 |",
                  "| --- | --- | --- |"]
        for name in ("keras", "tflite"):
            for runtime in ("onnx", "onnx_int8", "onnx_1thread"):
                if runtime in comparison[name]:
                    c = comparison[name][runtime]
                    lines.append(f"| {name} | {runtime.replace('_', ', ')} | {c['crops_speedup']:.2f} "
                                 f"(mean {c['crops_speedup_mean']:.2f}): "
                                 f"{'met' if c['crops_bar_2x_met'] else 'NOT met'} |")
        lines += ["", "| fer classifier | 3-face latency ratio, ferkit onnx / fer, bar <= 0.5 |",
                  "| --- | --- |"]
        for name in ("keras", "tflite"):
            c = comparison[name]
            lines.append(f"| {name} | {c['latency_ratio']:.2f} (median {c['latency_ratio_median']:.2f}): "
                         f"{'met' if c['latency_bar_half_met'] else 'NOT met'} |")
        lines += ["", f"Video frames/s, ferkit onnx / fer: {comparison['video_speedup']:.1f}x"]
    if ours.get("int8", "").startswith("skipped"):
        lines += ["", f"ferkit onnx int8: {ours['int8']}"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photo", help="portrait whose face builds the 3-face photo and the video "
                        "(default: astronaut.png in $FERKIT_SHARED or ../shared)")
    parser.add_argument("--model", default="paper", help="ferkit model to time (the issue's bars "
                        "name `paper`; `default` has the same graph)")
    parser.add_argument("--rounds", type=int, default=5, help="alternations of ferkit and fer")
    parser.add_argument("--window", type=float, default=0.6, help="seconds per throughput window")
    parser.add_argument("--runs", type=int, default=3, help="photo latency runs per round")
    parser.add_argument("--frames", type=int, default=300, help="length of the test video")
    parser.add_argument("--calibration", help="training faces for the int8 graph (default: the "
                        "FER2013 CSV in $FERKIT_SHARED or ../shared)")
    parser.add_argument("--out", dest="results_dir", type=Path, help="the same as --results-dir")
    parser.add_argument("--video-only", action="store_true", help="only the video section "
                        "(inference_video.json and .md): speed against fer, profile, "
                        "--detect-every agreement")
    parser.add_argument("--video-rounds", type=int, default=3, help="alternations of ferkit and fer on video")
    parser.add_argument("--shots", type=int, default=MONTAGE_SHOTS, help="photos in the montage video")
    parser.add_argument("--shot-frames", type=int, default=MONTAGE_SHOT_FRAMES, help="frames per photo")
    add_smoke_args(parser)
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.window, args.runs, args.frames = 1, 0.05, 1, 6
        args.video_rounds, args.shots, args.shot_frames = 1, 2, 3
    out = results_dir(args)
    shared = Path(os.environ.get("FERKIT_SHARED", REPO.parent / "shared"))
    calibration = Path(args.calibration or shared / "data" / "fer2013" / "fer2013.csv.gz")
    portrait = Path(args.photo) if args.photo else shared / "data" / "photos" / "astronaut.png"
    if not portrait.exists():
        raise SystemExit(f"{portrait} not found: a portrait is needed (--photo or $FERKIT_SHARED)")
    training_before = concurrent_training()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        video_result = video_bars(args.model, portrait, shared, Path(tmp), args.frames, args.shots,
                                  args.shot_frames, args.video_rounds)
    command = shlex.join([".venv/bin/python", "benchmarks/inference.py", *sys.argv[1:]])
    video_file = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M"),
                  "environment": {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "cpu_flags": cpu_flags(),
                                  "threads": THREADS, "load_before": load_before,
                                  "load_average": os.getloadavg(), "niceness": os.nice(0)},
                  "video": video_result}
    write_results(out, "inference_video", video_file, video_markdown(video_file))
    if args.video_only:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke and calibration.exists() and calibration.name.endswith((".csv", ".csv.gz")):
            calibration = training_slice(calibration, Path(tmp) / "calibration.csv", 64)
        photo = group_photo(portrait)
        photo_path = Path(tmp) / "three_faces.png"
        cv2.imwrite(str(photo_path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
        video = write_video(moving_face_frames(portrait, args.frames), Path(tmp) / "moving_face.mp4")
        int8 = int8_graph(args.model, calibration, Path(tmp))
        ours, fer = measure(args.model, photo, photo_path, video, args.rounds, args.window, args.runs, int8)
    import onnxruntime

    training = sorted(set(training_before) | set(concurrent_training()))

    result = {
        "command": shlex.join([".venv/bin/python", "benchmarks/inference.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "environment": {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "cpu_flags": cpu_flags(),
                        "threads": THREADS,
                        "python": platform.python_version(),
                        "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                        "niceness": os.nice(0), "load_average": os.getloadavg(),
                        "concurrent_training": training},
        "ferkit": ours, "fer": fer, "comparison": compare(ours, fer),
    }
    write_results(out, "inference", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
