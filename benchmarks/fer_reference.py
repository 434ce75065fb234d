"""The `fer` package (25.10.3) measured on request, for benchmarks/inference.py's comparison.

Runs inside its own virtualenv (``benchmarks/setup_fer_venv.sh`` makes ``.venv-fer``) because
fer needs TensorFlow; it imports nothing from ferkit. It loads fer once, prints a ``ready``
line, then answers one JSON request per stdin line with one JSON line, so that the driver can
interleave fer's measurements with ferkit's and both meet the same CPU load:

    {"task": "info"}
    {"task": "crops", "model": "keras" | "tflite", "batch": 64, "seconds": 0.6}
    {"task": "photo", "model": "keras" | "tflite", "path": "three_faces.png", "runs": 3}
    {"task": "video", "path": "moving_face.mp4"}
    {"task": "faces", "path": "photo.jpg", "boxes": [[x, y, w, h], ...]}
    {"task": "classify", "path": "faces.npy"}

``--smoke`` answers one tiny request of each task by itself (astronaut.png, a 3-frame clip) and
writes fer_reference.json to ``--results-dir``; run by a Python without fer, it runs itself in
``.venv-fer`` when that exists, else says it skips fer and exits 0:

    .venv-fer/bin/python benchmarks/fer_reference.py --smoke --results-dir /tmp/fer-smoke
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from repo_support import REPO, add_smoke_args, results_dir

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore")
THREADS = 2
FER_PYTHON = REPO / ".venv-fer" / "bin" / "python"
SHARED = Path(os.environ.get("FERKIT_SHARED", REPO.parent / "shared"))


class FerBench:
    def __init__(self) -> None:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        import cv2
        import numpy as np
        from fer import __version__
        from fer.fer import FER

        logging.getLogger("fer").setLevel(logging.WARNING)
        self.cv2, self.np = cv2, np
        self.versions = {"fer": __version__, "tensorflow": tf.__version__}
        # Keras: the model in fer/data/emotion_model.hdf5, callable on a batch.
        # TFLite: fer's default since 25.x, a quantised copy run one face per call.
        self.fers = {"keras": FER(use_tflite=False), "tflite": FER()}
        self.size = self.fers["keras"]._FER__emotion_classifier.input_shape[1:3]
        self.rng = np.random.default_rng(0)
        self.photos: dict = {}

    def info(self, _: dict) -> dict:
        model = self.fers["keras"]._FER__emotion_classifier
        return {**self.versions, "emotion_model_input": list(self.size), "threads": THREADS,
                "model_params": model.count_params(), "model_mmacs": keras_macs(model) / 1e6}

    def crops(self, req: dict) -> dict:
        """Crops/s of fer's own classification call over one time window (after a warm-up)."""
        fer = self.fers[req["model"]]
        faces = self.rng.uniform(-1, 1, (req["batch"], *self.size)).astype(self.np.float32)
        fer._classify_emotions(faces)
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < req["seconds"] or calls < 2:
            fer._classify_emotions(faces)
            calls += 1
        return {"rate": calls * req["batch"] / elapsed}

    def photo(self, req: dict) -> dict:
        """Wall times of ``detect_emotions`` (detection + crops + classification) on one picture."""
        fer = self.fers[req["model"]]
        image = self.photos.setdefault(req["path"], self.cv2.imread(req["path"]))
        faces = len(fer.detect_emotions(image))
        times = []
        for _ in range(req["runs"]):
            start = time.perf_counter()
            fer.detect_emotions(image)
            times.append((time.perf_counter() - start) * 1000)
        return {"faces": faces, "ms": times}

    def faces(self, req: dict) -> dict:
        """fer as a user runs it on one photo (its detector, crop and default model, timed), and
        its classifier alone on the given boxes (its own crop of each), for benchmarks/in_the_wild.py."""
        fer = self.fers["tflite"]
        image = self.cv2.imread(req["path"])
        start = time.perf_counter()
        found = fer.detect_emotions(image)
        ms = (time.perf_counter() - start) * 1000
        boxes = [[int(v) for v in b] for b in req.get("boxes", [])]
        given = fer.detect_emotions(image, face_rectangles=boxes) if boxes else []
        top = lambda face: max(face["emotions"], key=face["emotions"].get)  # noqa: E731
        return {"ms": ms, "detected": [{"box": [int(v) for v in f["box"]], "label": top(f)} for f in found],
                "given": [top(f) for f in given] if len(given) == len(boxes) else None}

    def classify(self, req: dict) -> dict:
        """fer's default classifier (TFLite) on 48x48 gray crops saved with numpy (FER2013's own
        crops, for benchmarks/robustness.py): each resized to fer's 64x64 and scaled as
        ``detect_emotions`` does, without the 10 px margin its crop adds around a detected box
        (with it fer scores 50% on 1,000 clean PrivateTest faces, without it 65%). Returns each
        face's top class; fer's class order is FER2013's."""
        faces = self.np.load(req["path"])
        size = (int(self.size[1]), int(self.size[0]))
        resized = self.np.stack([self.cv2.resize(face, size) for face in faces]).astype(self.np.float32)
        probs = self.np.asarray(self.fers["tflite"]._classify_emotions((resized / 255.0 - 0.5) * 2.0))
        return {"labels": probs.argmax(1).tolist()}

    def video(self, req: dict) -> dict:
        """fer's per-frame loop with its default model (its Video class adds file output to it)."""
        cap = self.cv2.VideoCapture(req["path"])
        frames = faces = 0
        start = time.perf_counter()
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            faces += len(self.fers["tflite"].detect_emotions(frame))
            frames += 1
        seconds = time.perf_counter() - start
        return {"frames": frames, "faces": faces, "fps": frames / seconds}


def keras_macs(model) -> int:
    """Multiply-adds of one face through the convolutions and dense layers (stride-1 separables)."""
    macs = 0
    for layer in model.layers:
        kind, out = type(layer).__name__, layer.output.shape
        if kind == "Conv2D":
            k = layer.kernel_size
            macs += out[1] * out[2] * out[3] * k[0] * k[1] * layer.input.shape[-1]
        elif kind == "SeparableConv2D":
            k, cin = layer.kernel_size, layer.input.shape[-1]
            macs += out[1] * out[2] * cin * (k[0] * k[1] + out[3])
        elif kind == "Dense":
            macs += layer.input.shape[-1] * out[-1]
    return macs


def smoke(args: argparse.Namespace) -> int:
    """One small request of every task, answered in this process; the replies go to
    fer_reference.json."""
    if not all(importlib.util.find_spec(m) for m in ("fer", "tensorflow")):
        if FER_PYTHON.exists() and Path(sys.prefix).resolve() != FER_PYTHON.parents[1].resolve():
            return subprocess.run([str(FER_PYTHON), __file__, *sys.argv[1:]]).returncode
        print(f"fer: skipped ({FER_PYTHON} not found: run benchmarks/setup_fer_venv.sh to compare with fer)")
        return 0
    photo = SHARED / "data" / "photos" / "astronaut.png"
    if not photo.exists():
        raise SystemExit(f"{photo} not found: the astronaut photo is needed ($FERKIT_SHARED)")
    out = results_dir(args)
    bench = FerBench()
    cv2, np = bench.cv2, bench.np
    with tempfile.TemporaryDirectory(prefix="fer-smoke-") as tmp:
        image = cv2.imread(str(photo))
        clip, faces = Path(tmp) / "clip.mp4", Path(tmp) / "faces.npy"
        writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, image.shape[1::-1])
        for _ in range(3):
            writer.write(image)
        writer.release()
        box = [180, 59, 90, 119]  # the astronaut's face (x, y, w, h)
        gray = cv2.cvtColor(image[59:178, 180:270], cv2.COLOR_BGR2GRAY)
        np.save(faces, np.stack([cv2.resize(gray, (48, 48))] * 2))
        models = ("keras", "tflite")
        requests = [{"task": "info"},
                    *({"task": "crops", "model": m, "batch": 2, "seconds": 0.05} for m in models),
                    *({"task": "photo", "model": m, "path": str(photo), "runs": 1} for m in models),
                    {"task": "faces", "path": str(photo), "boxes": [box]},
                    {"task": "classify", "path": str(faces)},
                    {"task": "video", "path": str(clip)}]
        replies = [{"request": req, "reply": getattr(bench, req["task"])(req)} for req in requests]
    (out / "fer_reference.json").write_text(json.dumps(replies, indent=2) + "\n")
    print(json.dumps(replies))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_smoke_args(parser)
    args = parser.parse_args()
    if args.smoke:
        return smoke(args)
    bench = FerBench()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        print(json.dumps(getattr(bench, req["task"])(req)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
