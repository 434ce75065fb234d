"""YuNet through onnxruntime and numpy against OpenCV's FaceDetectorYN: the same figures?

ferkit 0.2 dropped OpenCV from the runtime: YuNet now runs through onnxruntime and its outputs are
decoded in numpy (``ferkit.inference.detect``), photos are shrunk by numpy area averaging. This
runs the new detector and the former one (``tests/support/opencv_yunet.py``: FaceDetectorYN with
``cv2.resize``) side by side, in one process, on every photo of WIDER-200 and ExpW-dev, for each
graph and side of ``benchmarks/detector_choice.py``, and reports detector_choice's figures for
both (recall per face size at IoU >= 0.5, false boxes per WIDER photo, ExpW found rate at IoU >=
0.3, per score threshold) with the difference in points, plus box-level agreement at the lowest
threshold (boxes of one matched in the other at IoU >= 0.5, their mean IoU, the largest landmark
gap in pixels) and ms per photo (the two timed in rotation). Needs OpenCV (any 4.x or 5.x).
Writes benchmarks/results/yunet_backends.json and .md. About 15 minutes on 2 busy cores:

    nice -n 19 .venv/bin/python benchmarks/yunet_backends.py
    .venv/bin/python benchmarks/yunet_backends.py --smoke   # seconds: 3 + 3 photos
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime
import repo_support  # noqa: F401  (tests/support on the path)
from detector_choice import BUCKETS, GRAPHS, SIDES, THRESHOLDS, Tally, bucket, iou_matrix, read_boxes
from repo_support import add_smoke_args, results_dir, write_results
from support.opencv_yunet import OpenCVYuNet
from timing import cpu_model

from ferkit.imageio import load_image
from ferkit.inference.detect import YuNetDetector

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("opencv", "numpy")


def run(detector, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(boxes (N, 4) x, y, w, h; scores (N,); landmarks (N, 10); seconds) of one detect() call."""
    start = time.perf_counter()
    found = detector.detect(image)
    took = time.perf_counter() - start
    boxes = np.array([[b.x, b.y, b.w, b.h] for b in found], dtype=float).reshape(-1, 4)
    scores = np.array([b.score for b in found], dtype=float)
    marks = np.array([[v for p in b.landmarks for v in p] for b in found], dtype=float).reshape(-1, 10)
    return boxes, scores, marks, took


class Agreement:
    """Box-level agreement of the numpy detector with OpenCV's, over all photos."""

    def __init__(self) -> None:
        self.boxes = {b: 0 for b in BACKENDS}
        self.matched = 0
        self.iou_sum = 0.0
        self.max_landmark_gap = 0.0
        self.max_score_gap = 0.0
        self.photos = 0
        self.photos_same_count = 0

    def add(self, a: tuple, b: tuple) -> None:
        (ba, sa, ma, _), (bb, sb, mb, _) = a, b
        self.photos += 1
        self.photos_same_count += int(len(ba) == len(bb))
        self.boxes["opencv"] += len(ba)
        self.boxes["numpy"] += len(bb)
        iou = iou_matrix(ba, bb)
        while iou.size and iou.max() >= 0.5:  # greedy one-to-one matching, best pairs first
            i, j = np.unravel_index(int(iou.argmax()), iou.shape)
            self.matched += 1
            self.iou_sum += float(iou[i, j])
            self.max_landmark_gap = max(self.max_landmark_gap, float(np.abs(ma[i] - mb[j]).max()))
            self.max_score_gap = max(self.max_score_gap, abs(float(sa[i] - sb[j])))
            iou[i, :], iou[:, j] = -1, -1

    def summary(self) -> dict:
        return {"photos": self.photos, "photos_same_box_count": self.photos_same_count,
                "boxes": self.boxes, "matched": self.matched,
                "mean_iou_of_matched": self.iou_sum / self.matched if self.matched else float("nan"),
                "max_landmark_gap_px": self.max_landmark_gap, "max_score_gap": self.max_score_gap}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shared = Path(os.environ.get("FERKIT_SHARED", REPO.parent / "shared"))
    parser.add_argument("--shared", default=str(shared))
    parser.add_argument("--graphs", nargs="+", default=list(GRAPHS), choices=GRAPHS)
    parser.add_argument("--sides", nargs="+", default=[str(s or "none") for s in SIDES],
                        help="longest sides to run at (none: as is)")
    add_smoke_args(parser)
    args = parser.parse_args()
    shared = Path(args.shared)
    wider_dir, expw_dir = shared / "data" / "widerface-val200", shared / "data" / "expw-dev"
    models = shared / "models" / "yunet"
    for needed in (wider_dir / "boxes.csv", expw_dir / "labels.csv", models):
        if not needed.exists():
            raise SystemExit(f"{needed} not found: yunet_backends needs WIDER-200, ExpW-dev and the YuNet "
                             "graphs of the shared folder (--shared)")
    out = results_dir(args)
    limit = 3 if args.smoke else None
    wider = read_boxes(wider_dir / "boxes.csv")
    expw = read_boxes(expw_dir / "labels.csv")
    wider_names = sorted(p.name for p in (wider_dir / "images").iterdir())[:limit]
    expw_names = sorted(expw)[:limit]
    sides = [None if s == "none" else int(s) for s in args.sides]
    configs = [(g, s) for g in args.graphs for s in sides]
    detectors = {}
    for graph, side in configs:
        model = models / f"yunet_{graph}_640_640.onnx"
        lowest = min(THRESHOLDS)
        detectors[graph, side, "opencv"] = OpenCVYuNet(side=side, score_threshold=lowest, model=model)
        detectors[graph, side, "numpy"] = YuNetDetector(side=side, score_threshold=lowest, model=model)
    tallies = {(*k, t): Tally() for k in detectors for t in THRESHOLDS}
    seconds = {k: {"wider": 0.0, "expw": 0.0} for k in detectors}
    agreement = {c: Agreement() for c in configs}
    truth_buckets = dict.fromkeys(BUCKETS, 0)
    start = time.perf_counter()
    photos = [("wider", wider_dir / "images" / n, wider.get(n, np.zeros((0, 4)))) for n in wider_names]
    photos += [("expw", expw_dir / "images" / n, expw[n]) for n in expw_names]
    for index, (kind, path, truth) in enumerate(photos):
        if kind == "wider":
            for w, h in truth[:, 2:]:
                truth_buckets[bucket(w, h)] += 1
        image = load_image(path)
        for config in configs:
            order = BACKENDS if index % 2 else BACKENDS[::-1]  # who goes first alternates
            found = {b: run(detectors[(*config, b)], image) for b in order}
            agreement[config].add(found["opencv"], found["numpy"])
            for backend, (boxes, scores, _, took) in found.items():
                seconds[(*config, backend)][kind] += took
                for t in THRESHOLDS:
                    keep = boxes[scores >= t]
                    iou = iou_matrix(truth, keep)
                    tally = tallies[(*config, backend, t)]
                    if kind == "wider":
                        for (w, h), hit in zip(truth[:, 2:], (iou >= 0.5).any(axis=1), strict=True):
                            tally.hits[bucket(w, h)] += int(hit)
                        tally.unmatched += int((iou < 0.3).all(axis=0).sum()) if len(truth) else len(keep)
                    else:
                        tally.expw_found += int((iou >= 0.3).any(axis=1).sum())
    expw_faces = sum(len(expw[n]) for n in expw_names)
    rows = []
    for (graph, side, backend, t), tally in tallies.items():
        rows.append({
            "graph": graph, "side": side, "backend": backend, "threshold": t,
            "wider_recall": {b: tally.hits[b] / truth_buckets[b] if truth_buckets[b] else float("nan")
                             for b in BUCKETS},
            "wider_false_per_photo": tally.unmatched / len(wider_names),
            "expw_found_rate": tally.expw_found / expw_faces,
            "ms_per_photo": {k: v / (len(wider_names) if k == "wider" else len(expw_names)) * 1000
                             for k, v in seconds[graph, side, backend].items()},
        })
    result = {
        "command": "nice -n 19 .venv/bin/python benchmarks/yunet_backends.py",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "environment": {"cpus": os.cpu_count(), "cpu": cpu_model(), "opencv": cv2.__version__,
                        "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
                        "python": platform.python_version(), "load_average": os.getloadavg()},
        "data": {"wider_photos": len(wider_names), "wider_faces": truth_buckets,
                 "expw_photos": len(expw_names), "expw_faces": expw_faces},
        "seconds": time.perf_counter() - start, "rows": rows,
        "agreement": [{"graph": g, "side": s, "score_threshold": min(THRESHOLDS), **a.summary()}
                      for (g, s), a in agreement.items()],
    }
    write_results(out, "yunet_backends", result, markdown(result))


def markdown(result: dict) -> str:
    env, data = result["environment"], result["data"]
    lines = ["# YuNet: onnxruntime + numpy decoding (ferkit 0.2) against OpenCV's FaceDetectorYN", "",
             f"Command: `{result['command']}`  ", f"Date: {result['date']}  ",
             f"Machine: {env['cpus']} CPUs ({env['cpu']}), OpenCV {env['opencv']}, onnxruntime "
             f"{env['onnxruntime']}, numpy {env['numpy']}; load average "
             + ", ".join(f"{x:.1f}" for x in env["load_average"]) + " at the end.  ",
             f"Data: WIDER-200 {data['wider_photos']} photos, faces per bucket "
             + ", ".join(f"{b}: {n}" for b, n in data["wider_faces"].items())
             + f"; ExpW-dev {data['expw_photos']} photos, {data['expw_faces']} labelled faces.", "",
             "Figures as in detector_choice.md, for OpenCV (the former detector: FaceDetectorYN after "
             "cv2.resize) and numpy (the new one), and numpy minus OpenCV in points. ms: mean per photo "
             "(WIDER, ExpW), the two timed in rotation.", "",
             "| graph | side | score >= | WIDER <16 | 16-32 | 32-64 | >=64 | false/photo | ExpW found | "
             "largest gap (points) | ms WIDER opencv / numpy | ms ExpW opencv / numpy |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    by_key = {(r["graph"], r["side"], r["backend"], r["threshold"]): r for r in result["rows"]}
    worst = 0.0
    for (graph, side, backend, t), new in by_key.items():
        if backend != "numpy":
            continue
        old = by_key[graph, side, "opencv", t]
        pairs = [(old["wider_recall"][b], new["wider_recall"][b]) for b in BUCKETS]
        pairs.append((old["expw_found_rate"], new["expw_found_rate"]))
        gap = max(abs(100 * (n - o)) for o, n in pairs if not (np.isnan(o) or np.isnan(n)))
        worst = max(worst, gap)
        cells = [f"{100 * o:.1f} / {100 * n:.1f}" for o, n in pairs[:-1]]
        lines.append(
            f"| yunet_{graph} | {side or 'as is'} | {t} | " + " | ".join(cells)
            + f" | {old['wider_false_per_photo']:.2f} / {new['wider_false_per_photo']:.2f} | "
            f"{100 * pairs[-1][0]:.1f} / {100 * pairs[-1][1]:.1f} | {gap:.2f} | "
            f"{old['ms_per_photo']['wider']:.1f} / {new['ms_per_photo']['wider']:.1f} | "
            f"{old['ms_per_photo']['expw']:.1f} / {new['ms_per_photo']['expw']:.1f} |")
    shipped = [r for r in result["rows"] if (r["graph"], r["side"], r["threshold"]) == ("n", 320, 0.6)]
    summary = []
    if len(shipped) == 2:
        old, new = sorted(shipped, key=lambda r: r["backend"] != "opencv")
        gap = max(abs(100 * (new["wider_recall"][b] - old["wider_recall"][b])) for b in BUCKETS
                  if not np.isnan(old["wider_recall"][b]))
        gap = max(gap, abs(100 * (new["expw_found_rate"] - old["expw_found_rate"])))
        summary = [f"The shipped setting (yunet_n, side 320, score >= 0.6): largest gap {gap:.2f} "
                   "points.", ""]
    lines += ["", "Cells: OpenCV / numpy, in percent (false boxes per photo as they are). Largest gap: the "
              f"largest difference in any recall or found-rate cell of the row. Over all rows: {worst:.2f} "
              "points.", "", *summary,
              "Box-level agreement at score >= 0.5 (boxes matched one to one at IoU >= 0.5):", "",
              "| graph | side | photos with the same number of boxes | boxes opencv / numpy | matched | "
              "mean IoU of matched | largest landmark gap (px) | largest score gap |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for a in result["agreement"]:
        lines.append(f"| yunet_{a['graph']} | {a['side'] or 'as is'} | {a['photos_same_box_count']} of "
                     f"{a['photos']} | {a['boxes']['opencv']} / {a['boxes']['numpy']} | {a['matched']} | "
                     f"{a['mean_iou_of_matched']:.4f} | {a['max_landmark_gap_px']:.2f} | "
                     f"{a['max_score_gap']:.4f} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
