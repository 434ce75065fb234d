"""How big is a FER2013 crop compared with the Haar box around its face?

Runs OpenCV's frontal-face cascade on FER2013 training images (upscaled 4x, edges replicated
outwards so the face has room) and reports the crop side over the detected box side and the
box centre's offset. ferkit.inference.crop.CROP_SCALE is set from the median. About two
minutes on 2 busy cores:

    nice -n 19 .venv/bin/python benchmarks/crop_margin.py
    .venv/bin/python benchmarks/crop_margin.py --smoke   # seconds: 40 images (prints only)

Result (4,000 images, run while a training job shared the CPU): one face found in 3,179;
crop/box side median 1.016, mean 1.063 (quartiles 0.960, 1.097); centre offset median
0.12 px (x) and 0.00 px (y) of 48.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import os
from pathlib import Path

import cv2
import numpy as np
from repo_support import add_smoke_args

from ferkit.inference.detect import CASCADE_FILE

UPSCALE, PAD = 4, 96


def fer_images(csv_gz: Path, n: int) -> list[np.ndarray]:
    with gzip.open(csv_gz, "rt") as f:
        next(f)
        rows = [line.strip().split(",")[1] for line in itertools.islice(f, n)]
    return [np.array(px.split(), dtype=np.uint8).reshape(48, 48) for px in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shared = Path(os.environ.get("FERKIT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--csv", default=str(shared / "data" / "fer2013" / "fer2013.csv.gz"))
    parser.add_argument("-n", type=int, default=4000)
    add_smoke_args(parser)  # nothing is written: the figures are printed
    args = parser.parse_args()
    if args.smoke:
        args.n = 40
    if not Path(args.csv).is_file():
        raise SystemExit(f"{args.csv} not found: crop_margin needs FER2013's challenge CSV (--csv)")
    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / CASCADE_FILE))
    ratios, dx, dy = [], [], []
    images = fer_images(Path(args.csv), args.n)
    for img in images:
        big = cv2.resize(img, (48 * UPSCALE, 48 * UPSCALE), interpolation=cv2.INTER_CUBIC)
        big = cv2.copyMakeBorder(big, PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE)
        found = cascade.detectMultiScale(big, 1.05, 5, minSize=(60, 60))
        if len(found) != 1:
            continue
        x, y, w, h = found[0]
        ratios.append(48 * UPSCALE / w)
        dx.append((x + w / 2 - PAD) / UPSCALE - 24)
        dy.append((y + h / 2 - PAD) / UPSCALE - 24)
    r = np.array(ratios)
    print(f"one face found in {len(r)} of {len(images)} images")
    print(f"crop/box side: median {np.median(r):.3f}, mean {r.mean():.3f}, "
          f"quartiles {np.percentile(r, 25):.3f} {np.percentile(r, 75):.3f}")
    print(f"box centre offset (px of 48): x {np.median(dx):.2f}, y {np.median(dy):.2f}")


if __name__ == "__main__":
    main()
