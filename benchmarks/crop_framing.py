"""Where does FER2013 put a face in its 48x48 frame? YuNet's landmarks on FER2013's own faces.

Runs the shipped YuNet (at the padded image's own size) on FER2013 training images, upscaled
4x and padded with replicated edges so that the face has room, and reports, in the 48x48 frame
(pixel indices), the medians and quartiles of: the eyes' centre, the anchor (halfway between the
eyes' centre and the mouth's centre), the inter-ocular distance, the eyes-to-mouth distance,
the eye line's roll, and each landmark once the face is levelled, plus the found rate (a face
whose anchor lies in the frame). ``ferkit.inference.crop.FER2013_FRAMING`` is set from the
medians. Then, with those medians, three checks:

- FER2013 faces cut again from the upscaled images by the aligned crop, against the originals
  (pixel correlation; the same faces that set the medians), beside ferkit's square crop of the
  Haar box on the faces the cascade finds too;
- how near the crop's one warpAffine comes to an 8x supersampled reference on ExpW-dev faces it
  shrinks (mean absolute difference, grey levels): plain bilinear, and after an area pre-shrink
  to 1, 1.5 (ferkit's ``WARP_OVERSAMPLE``) or 2 x the crop's scale;
- roll: the astronaut portrait turned by -30 ... 30 degrees; the tilt YuNet's landmarks show
  (the portrait's own, upright, subtracted) and the tilt left in the aligned crop (measured on
  the upright photo's landmarks carried through the turn and the crop);
- ``--sheet PATH``: a PNG of FER2013 training faces beside aligned and square box crops of the
  astronaut and ExpW-dev faces, to look at.

Writes benchmarks/results/crop_framing.json. About 2 minutes on 2 busy cores:

    nice -n 19 .venv/bin/python benchmarks/crop_framing.py --sheet /tmp/crop_sheet.png
    .venv/bin/python benchmarks/crop_framing.py --smoke   # seconds: 48 faces, 8 photos, sheet too
"""

from __future__ import annotations

import argparse
import csv
import gzip
import itertools
import json
import math
import os
import time
from pathlib import Path

import cv2
import numpy as np
from repo_support import add_smoke_args, results_dir, write_text

from ferkit.errors import FerkitError
from ferkit.face import Box
from ferkit.imageio import load_image
from ferkit.inference.crop import Framing, alignment_matrix, crop_face, warp_face
from ferkit.inference.detect import YUNET_FILE, HaarDetector, YuNetDetector, to_gray

REPO = Path(__file__).resolve().parents[1]
UPSCALE, PAD = 4, 96
NAMES = ("right_eye", "left_eye", "nose", "right_mouth", "left_mouth")


def fer_images(csv_gz: Path, n: int) -> list[np.ndarray]:
    with gzip.open(csv_gz, "rt") as f:
        next(f)
        rows = [line.strip().split(",")[1] for line in itertools.islice(f, n)]
    return [np.array(px.split(), dtype=np.uint8).reshape(48, 48) for px in rows]


def upscaled(img: np.ndarray) -> np.ndarray:
    big = cv2.resize(img, (48 * UPSCALE, 48 * UPSCALE), interpolation=cv2.INTER_CUBIC)
    return cv2.copyMakeBorder(big, PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE)


def to_frame(points: np.ndarray) -> np.ndarray:
    """Pixel indices of the upscaled, padded image -> pixel indices of the 48x48 original."""
    return (points - PAD + 0.5) / UPSCALE - 0.5


def geometry(lm: np.ndarray) -> dict[str, np.ndarray | float]:
    eyes, mouth = (lm[0] + lm[1]) / 2, (lm[3] + lm[4]) / 2
    line = lm[1] - lm[0]
    return {"eyes": eyes, "mouth": mouth, "anchor": (eyes + mouth) / 2,
            "eye_distance": float(np.hypot(*line)), "eye_mouth_distance": float(np.hypot(*(mouth - eyes))),
            "roll": math.degrees(math.atan2(line[1], line[0]))}


def stats(values) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3), "iqr_over_median": float((q3 - q1) / med)
            if med else float("nan")}


def levelled(lm: np.ndarray, g: dict) -> np.ndarray:
    """The landmarks turned about the anchor so that the eye line is level."""
    a = math.radians(g["roll"])
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    return (lm - g["anchor"]) @ rot.T + g["anchor"]


def supersampled(gray: np.ndarray, matrix: np.ndarray, factor: int = 8) -> np.ndarray:
    """Reference crop: the warp at ``factor`` x the resolution, then area-averaged to 48x48."""
    up = np.array([[factor, 0, (factor - 1) / 2], [0, factor, (factor - 1) / 2], [0, 0, 1]])
    big = cv2.warpAffine(gray, (up @ np.vstack([matrix, [0, 0, 1]]))[:2], (48 * factor, 48 * factor),
                         flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(big, (48, 48), interpolation=cv2.INTER_AREA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shared = Path(os.environ.get("FERKIT_SHARED", REPO.parent / "shared"))
    parser.add_argument("--shared", default=str(shared))
    parser.add_argument("-n", type=int, default=4000, help="FER2013 training images (the CSV's first rows)")
    parser.add_argument("--expw-photos", type=int, default=300, help="ExpW-dev photos for the warp check")
    parser.add_argument("--sheet", help="write a PNG of FER2013 faces beside aligned crops here")
    parser.add_argument("--out", dest="results_dir", type=Path, help="the same as --results-dir")
    add_smoke_args(parser)
    args = parser.parse_args()
    shared = Path(args.shared)
    data = shared / "data"
    for needed in (data / "fer2013" / "fer2013.csv.gz", data / "expw-dev" / "labels.csv",
                   data / "photos" / "astronaut.png"):
        if not needed.is_file():
            raise SystemExit(f"{needed} not found: crop_framing needs FER2013's CSV, ExpW-dev and the "
                             "astronaut of the shared folder (--shared)")
    out = results_dir(args)
    sheet_photos = 40
    if args.smoke:
        args.n, args.expw_photos, sheet_photos = 48, 8, 4
        args.sheet = args.sheet or str(out / "crop_sheet.png")
    start = time.perf_counter()
    detector = YuNetDetector(side=None)
    images = fer_images(shared / "data" / "fer2013" / "fer2013.csv.gz", args.n)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (original, upscaled, landmarks in it)
    for img in images:
        big = upscaled(img)
        boxes = [b for b in detector.detect(big) if b.landmarks is not None]
        boxes = [b for b in boxes if np.all((g := to_frame(geometry(np.array(b.landmarks))["anchor"])) >= 0)
                 and np.all(g <= 47)]
        if boxes:
            best = max(boxes, key=lambda b: b.score or 0.0)
            found.append((img, big, np.array(best.landmarks)))
    geos = [geometry(to_frame(lm)) for _, _, lm in found]
    level = np.array([levelled(to_frame(lm), g) for (_, _, lm), g in zip(found, geos, strict=True)])
    size_eye = np.array([g["eye_distance"] for g in geos])
    size_mouth = np.array([g["eye_mouth_distance"] for g in geos])
    measured = {
        "anchor_x": stats([g["anchor"][0] for g in geos]), "anchor_y": stats([g["anchor"][1] for g in geos]),
        "eyes_x": stats([g["eyes"][0] for g in geos]), "eyes_y": stats([g["eyes"][1] for g in geos]),
        "mouth_y": stats([g["mouth"][1] for g in geos]),
        "eye_distance": stats(size_eye), "eye_mouth_distance": stats(size_mouth),
        "roll_degrees": stats([g["roll"] for g in geos]),
        "levelled_landmarks": {n: [float(np.median(level[:, i, 0])), float(np.median(level[:, i, 1]))]
                               for i, n in enumerate(NAMES)},
    }
    framing = Framing(measured["anchor_x"]["median"], measured["anchor_y"]["median"],
                      measured["eye_distance"]["median"], measured["eye_mouth_distance"]["median"])
    # How consistent is each size measure over FER2013's faces (smaller: a better predictor)?
    norm_eye, norm_mouth = size_eye / framing.eye_distance, size_mouth / framing.eye_mouth_distance
    measured["size_spread"] = {"eye_distance": stats(norm_eye)["iqr_over_median"],
                               "eye_mouth_distance": stats(norm_mouth)["iqr_over_median"],
                               "mean_of_both": stats((norm_eye + norm_mouth) / 2)["iqr_over_median"]}
    measured["position_spread_px"] = {
        "anchor": [measured["anchor_x"]["q3"] - measured["anchor_x"]["q1"],
                   measured["anchor_y"]["q3"] - measured["anchor_y"]["q1"]],
        "eyes": [measured["eyes_x"]["q3"] - measured["eyes_x"]["q1"],
                 measured["eyes_y"]["q3"] - measured["eyes_y"]["q1"]]}

    recrop = recrop_check(found, framing)
    warp_check = check_warp(shared, detector, framing, args.expw_photos)
    roll = roll_check(shared, framing)

    result = {
        "command": "nice -n 19 .venv/bin/python benchmarks/crop_framing.py",
        "date": time.strftime("%Y-%m-%d %H:%M"), "detector": f"{YUNET_FILE}, run at the padded image's size "
        f"({48 * UPSCALE + 2 * PAD} px), score >= {detector.score_threshold}",
        "images": len(images), "found": len(found), "found_rate": len(found) / len(images),
        "measured": measured, "framing": framing._asdict(),
        "recrop_correlation_with_original": recrop,
        "warp_check": warp_check, "roll_check": roll, "seconds": time.perf_counter() - start,
    }
    write_text(out / "crop_framing.json", json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "measured"}, indent=2))
    print(json.dumps(measured, indent=1))
    if args.sheet:
        sheet(shared, detector, images, framing, Path(args.sheet), sheet_photos)
        print(f"wrote {args.sheet}")


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def recrop_check(found: list[tuple[np.ndarray, np.ndarray, np.ndarray]], framing: Framing) -> dict:
    """Each found FER2013 face cut again from its upscaled image by the aligned crop, against the
    original 48x48 (Pearson correlation of the pixels); beside it, on the faces where OpenCV's Haar
    cascade also finds exactly one face, ferkit's square Haar-box crop (CROP_SCALE)."""
    aligned = [correlation(warp_face(big, alignment_matrix(tuple(map(tuple, lm)), framing)), img)
               for img, big, lm in found]
    out: dict = {"aligned": stats(aligned)}
    try:
        haar = HaarDetector(min_face=60, max_side=10_000)
    except FerkitError as exc:
        return {**out, "haar": f"skipped: {exc}"}
    both_aligned, both_haar = [], []
    for (img, big, _), r in zip(found, aligned, strict=True):
        boxes = haar.detect(big)
        if len(boxes) == 1:
            both_aligned.append(r)
            both_haar.append(correlation(crop_face(big, boxes[0]), img))
    return {**out, "faces_haar_found_too": len(both_haar), "aligned_on_those": stats(both_aligned),
            "haar_box_on_those": stats(both_haar)}


def expw_faces(shared: Path, detector: YuNetDetector, photos: int) -> list[tuple[np.ndarray, Box]]:
    """(gray photo, detected box) for the labelled faces YuNet finds in the first ExpW-dev photos."""
    folder = shared / "data" / "expw-dev"
    with (folder / "labels.csv").open() as f:
        names = sorted({row["image"] for row in csv.DictReader(f)})[:photos]
    out = []
    for name in names:
        rgb = load_image(folder / "images" / name)
        gray = to_gray(rgb)
        out.extend((gray, b) for b in detector.detect(rgb) if b.landmarks is not None)
    return out


def check_warp(shared: Path, detector: YuNetDetector, framing: Framing, photos: int) -> dict:
    """Mean |crop - 8x supersampled reference| (grey levels) over the faces the crop shrinks: plain
    bilinear warpAffine, and area pre-shrinks to 1, 1.5 (ferkit's) and 2 x the crop's scale."""
    ways = {"plain_bilinear": None, "pre_shrink_1x": 1.0, "pre_shrink_1.5x": 1.5, "pre_shrink_2x": 2.0}
    diffs: dict[str, list[float]] = {k: [] for k in ways}
    shrink: list[float] = []
    for gray, box in expw_faces(shared, detector, photos):
        matrix = alignment_matrix(box.landmarks, framing)
        scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
        if scale >= 1:
            continue
        ref = supersampled(gray, matrix).astype(float)
        for name, oversample in ways.items():
            crop = (warp_face(gray, matrix, oversample) if oversample else cv2.warpAffine(
                gray, matrix, (48, 48), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
            diffs[name].append(float(np.abs(crop - ref).mean()))
        shrink.append(1 / scale)
    far = np.array(shrink) >= 2
    return {"faces_shrunk": len(shrink), "faces_shrunk_2x_or_more": int(far.sum()),
            "median_shrink": float(np.median(shrink)) if shrink else None,
            "mean_abs_diff": {k: float(np.mean(v)) for k, v in diffs.items()},
            "mean_abs_diff_shrunk_2x_or_more": {k: float(np.mean(np.array(v)[far])) for k, v in diffs.items()}
            if far.any() else {}}


def roll_check(shared: Path, framing: Framing) -> list[dict[str, float]]:
    """Per turn of the astronaut portrait (anticlockwise, degrees): the tilt of the eye line that
    the shipped detector's landmarks show, and the true eyes' tilt left in the aligned crop."""
    rgb = load_image(shared / "data" / "photos" / "astronaut.png")
    detector = YuNetDetector()  # as shipped: the photo at YUNET_SIDE
    upright = np.array(detector.detect(rgb)[0].landmarks)
    base = geometry(upright)["roll"]
    h, w = rgb.shape[:2]
    out = []
    for degrees in (-30, -20, -10, -5, 0, 5, 10, 20, 30):
        turn = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
        turned = cv2.warpAffine(rgb, turn, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        boxes = detector.detect(turned)
        if not boxes:
            out.append({"turn": degrees, "found": 0})
            continue
        lm = np.array(max(boxes, key=lambda b: b.score or 0).landmarks)
        truth = upright @ turn[:, :2].T + turn[:, 2]  # where the eyes really are in the turned photo
        matrix = alignment_matrix(tuple(map(tuple, lm)), framing)
        in_crop = truth @ matrix[:, :2].T + matrix[:, 2]
        left = math.degrees(math.atan2(in_crop[1, 1] - in_crop[0, 1], in_crop[1, 0] - in_crop[0, 0])) - base
        # image y points down: a turn anticlockwise by d tilts the eye line by -d
        out.append({"turn": degrees, "found": len(boxes), "landmark_tilt": -(geometry(lm)["roll"] - base),
                    "left_in_crop": -left})
    return out


def sheet(shared: Path, detector: YuNetDetector, fer: list[np.ndarray], framing: Framing, path: Path,
          photos: int = 40) -> None:
    """Rows of 12 faces, 3x enlarged: FER2013 training faces; aligned crops of the astronaut (plain
    and turned 20 degrees) and ExpW-dev faces; the square box crops of the same faces."""
    astro = load_image(shared / "data" / "photos" / "astronaut.png")
    turned = cv2.warpAffine(astro, cv2.getRotationMatrix2D((256, 256), 20, 1.0), (512, 512),
                            borderMode=cv2.BORDER_REPLICATE)
    faces = [(to_gray(img), b) for img in (astro, turned) for b in detector.detect(img)]
    faces += expw_faces(shared, detector, photos)[:22]
    aligned = [warp_face(g, alignment_matrix(b.landmarks, framing)) for g, b in faces]
    boxed = [crop_face(g, Box(b.x, b.y, b.w, b.h)) for g, b in faces]
    rows = [fer[:12], fer[12:24], aligned[:12], aligned[12:24], boxed[:12], boxed[12:24]]
    grid = np.vstack([np.hstack(list(r) + [np.zeros((48, 48), np.uint8)] * (12 - len(r))) for r in rows])
    grid = cv2.resize(grid, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
    for i in range(1, len(rows)):
        if i % 2 == 0:
            grid[i * 144 - 1 : i * 144 + 1] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), grid)


if __name__ == "__main__":
    main()
