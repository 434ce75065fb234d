"""ferkit on real faces, old and new, with `fer` beside them: web photos and crowd photos, one run.

- ExpW-dev (``../shared/data/expw-dev``, 1,920 labelled faces in 1,806 web photos; measuring only):
  found rate (a detection with IoU >= 0.3), end-to-end accuracy over ALL labelled faces (a missed
  face is wrong), classifier-alone accuracy and macro-F1 (each labelled box cropped by the
  system's own crop; ferkit: :mod:`ferkit.evaluate.photos`, fer: ``detect_emotions`` with the
  boxes given).
- WIDER-200 (``../shared/data/widerface-val200``): recall at IoU >= 0.5 per face-size bucket and
  milliseconds per photo of the whole pipeline (decode excluded: detection, crops, classification).

Systems: ferkit as it shipped before this round (``--old``: the weights of that commit, Haar
detector, box crop), ferkit now (YuNet, eye-levelled crop, each ``--models``), and fer 25.10.3
(its Haar detector, its crop, its default TFLite model) in ``.venv-fer``
(``benchmarks/setup_fer_venv.sh``). WIDER photos are timed in rotation, so load from other jobs
falls on all systems alike. Writes benchmarks/results/in_the_wild.json and .md:

    .venv/bin/python benchmarks/in_the_wild.py
    .venv/bin/python benchmarks/in_the_wild.py --smoke   # seconds: default only, 6 + 3 photos
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from detector_choice import BUCKETS, bucket, iou_matrix, read_boxes
from inference import concurrent_training, start_fer
from repo_support import add_smoke_args, results_dir, write_text
from timing import cpu_model

from ferkit.data.labelled_photos import load_labelled_photos
from ferkit.evaluate.metrics import compute_metrics, metrics_with_misses
from ferkit.evaluate.photos import evaluate_photos, match_boxes
from ferkit.face import CLASS_TO_INDEX, Box
from ferkit.imageio import load_image
from ferkit.inference import HaarDetector, Recognizer

REPO = Path(__file__).resolve().parents[1]
SMOKE_EXPW_PHOTOS, SMOKE_WIDER_PHOTOS = 6, 3
OLD_REF = "e1eca73"  # the last commit before YuNet, the aligned crop and the FER+ models


def old_weights(ref: str, name: str, folder: Path) -> Path | str:
    """The shipped model ``name`` as it was at git commit ``ref``, written to ``folder``, or why not
    (a shallow clone lacks the commit; the old system is then skipped)."""
    for suffix in (".safetensors", ".json"):
        show = subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:ferkit/weights/{name}{suffix}"],
                              capture_output=True)
        if show.returncode:
            return f"git show {ref}:ferkit/weights/{name}{suffix} failed: {show.stderr.decode().strip()}"
        (folder / f"{name}{suffix}").write_bytes(show.stdout)
    return folder / f"{name}.safetensors"


def wider_scores(runners: dict, wider_dir: Path,
                 limit: int = 0) -> dict[str, tuple[dict[str, float], list[float]]]:
    """Per system: recall at IoU >= 0.5 per bucket and ms per photo of ``run(path) -> (boxes, ms)``.

    Every photo (the first ``limit``; 0: all) goes through every system, the order rotating from
    photo to photo. A bucket with no face among the photos has recall nan."""
    truth = read_boxes(wider_dir / "boxes.csv")
    names = list(runners)
    hits = {n: dict.fromkeys(BUCKETS, 0) for n in names}
    ms: dict[str, list[float]] = {n: [] for n in names}
    totals = dict.fromkeys(BUCKETS, 0)
    for k, photo in enumerate(sorted(truth)[: limit or None]):
        faces = truth[photo]
        for w, h in faces[:, 2:]:
            totals[bucket(w, h)] += 1
        for name in names[k % len(names):] + names[: k % len(names)]:
            boxes, took = runners[name](wider_dir / "images" / photo)
            ms[name].append(took)
            found = (iou_matrix(faces, boxes) >= 0.5).any(axis=1)
            for (w, h), hit in zip(faces[:, 2:], found, strict=True):
                hits[name][bucket(w, h)] += int(hit)
    return {n: ({b: hits[n][b] / totals[b] if totals[b] else float("nan") for b in BUCKETS}, ms[n])
            for n in names}


def ferkit_predict(recognizer: Recognizer):
    def run(path: Path) -> tuple[np.ndarray, float]:
        rgb = load_image(path)
        start = time.perf_counter()
        faces = recognizer.predict(rgb).faces
        took = (time.perf_counter() - start) * 1000
        return np.array([[f.box.x, f.box.y, f.box.w, f.box.h] for f in faces], float).reshape(-1, 4), took
    return run


def fer_predict(fer):
    def run(path: Path) -> tuple[np.ndarray, float]:
        reply = fer.ask(task="faces", path=str(path), boxes=[])
        return np.array([f["box"] for f in reply["detected"]], float).reshape(-1, 4), reply["ms"]
    return run


def fer_on_photos(fer, data) -> dict:
    """fer's found rate, end-to-end and classifier-alone scores, counted as ferkit's are."""
    labels, alone, e2e = [], [], []
    for photo in data.photos:
        boxes = [f.box for f in photo.faces]
        reply = fer.ask(task="faces", path=str(photo.path), boxes=[[b.x, b.y, b.w, b.h] for b in boxes])
        detected = [Box(*d["box"]) for d in reply["detected"]]
        match = match_boxes(boxes, detected)
        given = reply["given"] or ["?"] * len(boxes)
        for face, j, label in zip(photo.faces, match, given, strict=True):
            labels.append(face.label)
            alone.append(CLASS_TO_INDEX.get(label, -1))
            e2e.append(-1 if j is None else CLASS_TO_INDEX[reply["detected"][j]["label"]])
    y, e2e_pred = np.array(labels), np.array(e2e)
    found = e2e_pred >= 0
    classifier = compute_metrics(y, np.where(np.array(alone) >= 0, alone, (y + 1) % 7))
    end = metrics_with_misses(y, e2e_pred) | {"found": int(found.sum()), "found_rate": float(found.mean())}
    return {"classifier": classifier, "end_to_end": end}


def summary_row(name: str, expw: dict, recall: dict[str, float], ms: list[float]) -> dict:
    return {"system": name, "expw_found_rate": expw["end_to_end"]["found_rate"],
            "expw_end_to_end_accuracy": expw["end_to_end"]["accuracy"],
            "expw_end_to_end_macro_f1": expw["end_to_end"]["macro_f1"],
            "expw_classifier_accuracy": expw["classifier"]["accuracy"],
            "expw_classifier_macro_f1": expw["classifier"]["macro_f1"],
            "expw_end_to_end_recall": {c: v["recall"] for c, v in expw["end_to_end"]["per_class"].items()},
            "expw_end_to_end_worst": min((v["recall"], c) for c, v in expw["end_to_end"]["per_class"].items()
                                         if v["support"]),
            "wider_recall": recall, "wider_ms_per_photo_median": float(np.median(ms)),
            "wider_ms_per_photo_mean": float(np.mean(ms))}


def worst(row: dict) -> str:
    """The lowest end-to-end recall and its class (rows from before it was recorded: '-')."""
    if "expw_end_to_end_worst" not in row:
        return "-"
    recall, name = row["expw_end_to_end_worst"]
    return f"{recall:.2f} ({name})"


def write_markdown(result: dict, path: Path) -> None:
    rows = result["systems"]
    expw = next(iter(result["details"].values()))  # a ferkit system's: counts of faces and photos
    lines = [
        "# Real faces: ferkit old and new beside fer", "",
        f"Command: `{result['command']}`  ", f"Date: {result['date']}  ",
        f"Machine: {result['environment']['cpu']}, {result['environment']['cpus']} CPUs; load average "
        f"{', '.join(f'{v:.1f}' for v in result['environment']['load_average'])} at the end"
        + (f"; {len(result['environment']['concurrent_training'])} training job(s) ran beside it"
           if result["environment"]["concurrent_training"] else "") + " (compare ratios, not times).", "",
        f"ExpW-dev: {expw['n']:,} labelled faces in {expw['photos']:,} web photos. Found: a detection "
        "with IoU >= 0.3; end to end: accuracy over all labelled faces, a missed face counts as wrong; "
        "classifier alone: each labelled box cropped by the system's own crop. WIDER-200: recall at IoU "
        ">= 0.5 by the face's longer side in the 416x416 photo; ms: median per photo, detection + crops "
        "+ classification.", "",
        "| system | ExpW found | end to end acc | end to end macro-F1 | worst class recall | classifier acc "
        "| classifier macro-F1 | WIDER <16 | 16-32 | 32-64 | >=64 | ms/photo |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        w = r["wider_recall"]
        lines.append(
            f"| {r['system']} | {r['expw_found_rate']:.1%} | {r['expw_end_to_end_accuracy']:.1%} | "
            f"{r['expw_end_to_end_macro_f1']:.3f} | {worst(r)} | {r['expw_classifier_accuracy']:.1%} | "
            f"{r['expw_classifier_macro_f1']:.3f} | " + " | ".join(f"{w[b]:.1%}" for b in BUCKETS)
            + f" | {r['wider_ms_per_photo_median']:.1f} |")
    classes = list(rows[0].get("expw_end_to_end_recall", {}))
    if classes:
        lines += ["", "ExpW-dev recall per class, end to end:", "",
                  "| system | " + " | ".join(classes) + " |", "| --- |" + " --- |" * len(classes)]
        lines += [f"| {r['system']} | " + " | ".join(f"{r['expw_end_to_end_recall'][c]:.2f}" for c in classes)
                  + " |" for r in rows if "expw_end_to_end_recall" in r]
    if result.get("old_skipped"):
        lines += ["", f"old ferkit: skipped ({result['old_skipped']})"]
    if result.get("fer_skipped"):
        lines += ["", f"fer: skipped ({result['fer_skipped']})"]
    write_text(path, "\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shared = Path(os.environ.get("FERKIT_SHARED", REPO.parent / "shared"))
    parser.add_argument("--shared", default=str(shared))
    parser.add_argument("--models", nargs="+", default=["default", "large"], help="ferkit models now")
    parser.add_argument("--priors", nargs="+", default=["balanced", "natural"],
                        help="class priors to run each model with (ferkit.runtime.prior)")
    parser.add_argument("--old", default=OLD_REF, help="git commit of the old ferkit's default weights")
    parser.add_argument("--no-fer", action="store_true")
    parser.add_argument("--out", dest="results_dir", type=Path, help="the same as --results-dir")
    add_smoke_args(parser)
    args = parser.parse_args()
    shared = Path(args.shared)
    expw_dir, wider_dir = shared / "data" / "expw-dev", shared / "data" / "widerface-val200"
    for needed in (expw_dir / "labels.csv", wider_dir / "boxes.csv"):
        if not needed.is_file():
            raise SystemExit(f"{needed} not found: in_the_wild needs ExpW-dev and WIDER-200 (--shared)")
    out = results_dir(args)
    data = load_labelled_photos(expw_dir)
    wider_limit = 0
    if args.smoke:
        args.models, args.priors, wider_limit = ["default"], ["balanced"], SMOKE_WIDER_PHOTOS
        step = max(1, len(data.photos) // SMOKE_EXPW_PHOTOS)  # spread out: labels.csv runs class by class
        data = dataclasses.replace(data, photos=data.photos[::step][:SMOKE_EXPW_PHOTOS])
    with tempfile.TemporaryDirectory() as tmp:
        systems = {}
        old = old_weights(args.old, "default", Path(tmp))
        if isinstance(old, str):
            print(f"old ferkit skipped: {old}", file=sys.stderr)
        else:
            systems[f"ferkit {args.old} default (Haar, box crop, FER2013 labels)"] = Recognizer(
                str(old), detector=HaarDetector(), backend="onnx")
        for m in args.models:
            for prior in args.priors:
                systems[f"ferkit now {m}, prior {prior} (YuNet, aligned crop)"] = Recognizer(
                    m, backend="onnx", prior=prior)
        fer = "--no-fer given" if args.no_fer else start_fer()
        if isinstance(fer, str):
            print(f"fer skipped: {fer}", file=sys.stderr)
        expw = {name: evaluate_photos(rec, data, progress=sys.stderr.isatty())
                for name, rec in systems.items()}
        runners = {name: ferkit_predict(rec) for name, rec in systems.items()}
        if not isinstance(fer, str):
            print("fer on ExpW-dev ...", file=sys.stderr, flush=True)
            expw["fer 25.10.3 (Haar, its crop, TFLite)"] = fer_on_photos(fer, data)
            runners["fer 25.10.3 (Haar, its crop, TFLite)"] = fer_predict(fer)
        print("WIDER-200 ...", file=sys.stderr, flush=True)
        wider = wider_scores(runners, wider_dir, wider_limit)
        if not isinstance(fer, str):
            fer.close()
    result = {
        "command": ".venv/bin/python benchmarks/in_the_wild.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "environment": {"cpus": os.cpu_count(), "cpu": cpu_model(),
                        "load_average": os.getloadavg(), "concurrent_training": concurrent_training()},
        "systems": [summary_row(name, expw[name], *wider[name]) for name in expw],
        "details": expw, "fer_skipped": fer if isinstance(fer, str) else None,
    }
    if isinstance(old, str):
        result["old_skipped"] = old
    write_text(out / "in_the_wild.json", json.dumps(result, indent=2) + "\n")
    write_markdown(result, out / "in_the_wild.md")
    print((out / "in_the_wild.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
