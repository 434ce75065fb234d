"""What moves a model's score on real faces? Prior correction, crop scale and shift, flip TTA.

Crops every ExpW-dev labelled box once, as ferkit's pipeline does (YuNet, the eye-levelled crop,
each box with the landmarks of the detection matched to it, IoU >= 0.3), and the found faces'
crops for the end-to-end score (a missed face is wrong); then, for each model, scores:

- decisions by ``log p - a * log prior`` (prior: the mean FER+ vote distribution of Training),
  on ExpW-dev and on FER+ PublicTest (selection sets only; PrivateTest is never read here);
- the crop zoomed by 0.90-1.15 or shifted 2 px up or down (a warp of the 48x48 crop);
- flip TTA, and multi-crop TTA (3 zooms x 3 vertical shifts x flip, probabilities averaged);
- the ensemble of all the models given (mean probabilities, single pass and multi-crop).

Writes benchmarks/results/real_faces_study.json; results/real-faces/experiments.md quotes it:

    .venv/bin/python benchmarks/real_faces_study.py runs/default-ferplus runs/large-ferplus
    .venv/bin/python benchmarks/real_faces_study.py --smoke   # seconds: 2 models, 6 photos, 8 PublicTest
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from repo_support import add_smoke_args, results_dir, write_text

from ferkit.data.labelled_photos import load_labelled_photos
from ferkit.evaluate.metrics import compute_metrics
from ferkit.evaluate.photos import match_boxes
from ferkit.imageio import load_image
from ferkit.inference.crop import crop_faces
from ferkit.inference.detect import to_gray
from ferkit.inference.recognizer import Recognizer
from ferkit.models.io import load_model
from ferkit.runtime.torch_backend import predict_logits
from ferkit.train.config import load_config
from ferkit.train.loop import load_splits

REPO = Path(__file__).resolve().parents[1]
PRIOR_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
ZOOMS = (0.9, 0.95, 1.05, 1.1, 1.15)
MULTI_CROP = [(z, d) for z in (0.95, 1.0, 1.05) for d in (-2, 0, 2)]  # each with its mirror image
SMOKE_MODELS, SMOKE_PHOTOS = ["default", "paper"], 6
# --smoke's rows per Usage: Training only gives the prior (and must hold one batch), PublicTest is scored
SMOKE_ROWS = {b"Training": 256, b"PublicTest": 8, b"PrivateTest": 4}


def smoke_slice(csv_gz: Path, votes_gz: Path, folder: Path, rows: dict[bytes, int]) -> tuple[Path, Path]:
    """--smoke: the first ``rows[usage]`` rows of each Usage of the challenge CSV and their FER+
    votes (renumbered), written to ``folder``: real faces without parsing all 35,887 rows."""
    want = dict(rows)
    keep: dict[int, int] = {}  # row of the full CSV -> row of the slice
    csv_out, votes_out = folder / "fer2013.csv", folder / "ferplus_votes.csv"
    with gzip.open(csv_gz, "rb") as src, open(csv_out, "wb") as dst:
        dst.write(src.readline())
        for row, line in enumerate(src):
            usage = line.rstrip().rsplit(b",", 1)[1]
            if want.get(usage, 0) > 0:
                want[usage] -= 1
                keep[row] = len(keep)
                dst.write(line)
            if not any(want.values()):
                break
    with gzip.open(votes_gz, "rt") as src, open(votes_out, "w") as dst:
        dst.write(src.readline())
        for line in src:
            row, rest = line.split(",", 1)
            if int(row) in keep:
                dst.write(f"{keep[int(row)]},{rest}")
    return csv_out, votes_out


def pipeline_crops(expw: Path, photos: int = 0) -> dict[str, np.ndarray]:
    """Classifier-alone crops of every labelled box, end-to-end crops (zeros where missed); with
    ``photos``, of that many photos spread over the set (labels.csv runs class by class)."""
    data = load_labelled_photos(expw)
    if photos:
        step = max(1, len(data.photos) // photos)
        data = dataclasses.replace(data, photos=data.photos[::step][:photos])
    detector = Recognizer("default").detector
    alone, found_crops, labels, found = [], [], [], []
    for photo in data.photos:
        rgb = load_image(photo.path)
        gray = to_gray(rgb)
        boxes = detector.detect(rgb)
        crops = crop_faces(gray, boxes)
        labelled = [f.box for f in photo.faces]
        match = match_boxes(labelled, boxes)
        boxed = [box if j is None or boxes[j].landmarks is None
                 else dataclasses.replace(boxes[j], x=box.x, y=box.y, w=box.w, h=box.h)
                 for box, j in zip(labelled, match, strict=True)]
        alone.append(crop_faces(gray, boxed))
        for face, j in zip(photo.faces, match, strict=True):
            labels.append(face.label)
            found.append(j is not None)
            found_crops.append(crops[j] if j is not None else np.zeros((48, 48), np.uint8))
    return {"alone": np.concatenate(alone), "e2e": np.stack(found_crops), "labels": np.array(labels),
            "found": np.array(found)}


def warped(crops: np.ndarray, zoom: float = 1.0, dy: float = 0.0) -> np.ndarray:
    m = np.array([[zoom, 0, 24 - 24 * zoom], [0, zoom, 24 - 24 * zoom + dy]], np.float32)
    return np.stack([cv2.warpAffine(c, m, (48, 48), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE) for c in crops])


def study(model_ref: str, crops: dict[str, np.ndarray], val, prior: np.ndarray,
          probs: dict[str, list[np.ndarray]]) -> dict:
    """One model's figures; its probabilities go into ``probs`` for the ensemble."""
    net, _ = load_model(model_ref)

    def log_probs(faces: np.ndarray, tta: bool = False) -> np.ndarray:
        logits = predict_logits(net, torch.from_numpy(np.ascontiguousarray(faces)), tta=tta)
        return logits.log_softmax(1).numpy()

    y, found = crops["labels"], crops["found"]
    alone, e2e, public = log_probs(crops["alone"]), log_probs(crops["e2e"]), log_probs(val.images)
    out: dict = {"prior_correction": [], "crop": {}}
    for a in PRIOR_WEIGHTS:
        shift = -a * np.log(prior)
        m = compute_metrics(y, (alone + shift).argmax(1))
        end = np.where(found, (e2e + shift).argmax(1), -1)
        out["prior_correction"].append({
            "a": a, "expw_alone_accuracy": m["accuracy"], "expw_alone_macro_f1": m["macro_f1"],
            "expw_end_to_end_accuracy": float((end == y).mean()),
            "ferplus_public_accuracy": compute_metrics(val.labels, (public + shift).argmax(1))["accuracy"]})
    accuracy = lambda lp: float((lp.argmax(1) == y).mean())  # noqa: E731
    out["crop"]["as measured"] = accuracy(alone)
    out["crop"] |= {f"zoom {z}": accuracy(log_probs(warped(crops["alone"], zoom=z))) for z in ZOOMS}
    out["crop"] |= {f"shift {d:+d} px": accuracy(log_probs(warped(crops["alone"], dy=d))) for d in (-2, 2)}
    out["flip_tta"] = accuracy(log_probs(crops["alone"], tta=True))
    single = {"alone": np.exp(alone), "e2e": np.exp(e2e), "public": np.exp(public)}
    multi = {"alone": multi_crop(log_probs, crops["alone"]), "e2e": multi_crop(log_probs, crops["e2e"]),
             "public": multi_crop(log_probs, val.images)}
    out["multi_crop_tta"] = scores(multi, crops, val)
    for key, p in (*((f"single/{k}", v) for k, v in single.items()),
                   *((f"multi/{k}", v) for k, v in multi.items())):
        probs.setdefault(key, []).append(p)
    return out


def multi_crop(log_probs, faces: np.ndarray) -> np.ndarray:
    """Mean probabilities over MULTI_CROP's warps, each with flip TTA (18 passes)."""
    return np.mean([np.exp(log_probs(warped(faces, zoom=z, dy=d), tta=True)) for z, d in MULTI_CROP], axis=0)


def scores(p: dict[str, np.ndarray], crops: dict[str, np.ndarray], val) -> dict:
    """ExpW-dev alone (accuracy, macro-F1), end to end, FER+ PublicTest for probabilities ``p``."""
    y = crops["labels"]
    m = compute_metrics(y, p["alone"].argmax(1))
    end = np.where(crops["found"], p["e2e"].argmax(1), -1)
    return {"expw_alone_accuracy": m["accuracy"], "expw_alone_macro_f1": m["macro_f1"],
            "expw_end_to_end_accuracy": float((end == y).mean()),
            "ferplus_public_accuracy": compute_metrics(val.labels, p["public"].argmax(1))["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shared = Path(os.environ.get("FERKIT_SHARED", REPO.parent / "shared"))
    parser.add_argument("models", nargs="*", help="shipped names, weights files or run folders")
    parser.add_argument("--shared", default=str(shared))
    parser.add_argument("--out", help="the JSON file to write (default: real_faces_study.json in the "
                                      "results folder); with --smoke, only its name is kept")
    add_smoke_args(parser)
    args = parser.parse_args()
    if args.smoke:
        args.models = SMOKE_MODELS
        torch.set_num_threads(1)  # a few hundred faces: one thread is quicker on a shared machine
    elif not args.models:
        parser.error("give at least one model (a shipped name, a weights file or a run folder)")
    shared = Path(args.shared)
    csv_path = shared / "data" / "fer2013" / "fer2013.csv.gz"
    votes_path = shared / "data" / "ferplus" / "ferplus_votes.csv.gz"
    for needed in (csv_path, votes_path, shared / "data" / "expw-dev" / "labels.csv"):
        if not needed.is_file():
            raise SystemExit(f"{needed} not found: real_faces_study needs FER2013's CSV, the FER+ votes "
                             "and ExpW-dev (--shared)")
    name = Path(args.out).name if args.out else "real_faces_study.json"
    out = Path(args.out) if args.out and not args.smoke else results_dir(args) / name
    overrides = ["labels=ferplus"]
    with tempfile.TemporaryDirectory(prefix="ferkit-real-faces-") as tmp:
        if args.smoke:
            csv_path, votes_path = smoke_slice(csv_path, votes_path, Path(tmp), SMOKE_ROWS)
            overrides.append(f"ferplus_votes={votes_path}")
        splits = load_splits(load_config(None, overrides), csv_path)
    prior = splits["train"].targets.mean(0)
    crops = pipeline_crops(shared / "data" / "expw-dev", SMOKE_PHOTOS if args.smoke else 0)
    out_arg = ["--out", args.out] if args.out else []
    command = [".venv/bin/python benchmarks/real_faces_study.py", *args.models, *out_arg]
    result = {"command": " ".join(command),
              "prior": prior.round(4).tolist(), "expw_found": int(crops["found"].sum()),
              "models": {}}
    probs: dict[str, list[np.ndarray]] = {}
    for m in args.models:
        result["models"][m] = study(m, crops, splits["val"], prior, probs)
        print(m, json.dumps(result["models"][m]["multi_crop_tta"]), flush=True)
    if len(args.models) > 1:
        mean = {key: np.mean(p, axis=0) for key, p in probs.items()}
        result["ensemble"] = {
            when: scores({k: mean[f"{when}/{k}"] for k in ("alone", "e2e", "public")}, crops, splits["val"])
            for when in ("single", "multi")}
    write_text(out, json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("models", "ensemble") if k in result}, indent=1))


if __name__ == "__main__":
    main()
