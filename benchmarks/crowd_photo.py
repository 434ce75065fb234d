"""A 960x640 "crowd" for the README: the head of the public-domain astronaut portrait pasted
nine times at sizes from 40 to 200 px, turned up to 25 degrees, mirrored, darkened and brightened, on a grey
ground. (The crowd photos ferkit is measured on, WIDER FACE and ExpW, may not be redistributed.)

    .venv/bin/python benchmarks/crowd_photo.py && ferkit predict docs/crowd.jpg --annotate docs/
    .venv/bin/python benchmarks/crowd_photo.py --smoke   # the same photo, into a temporary folder
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np
from repo_support import add_smoke_args, results_dir

REPO = Path(__file__).resolve().parents[1]
# (centre x, centre y, side, degrees, mirrored, brightness)
PEOPLE = [(120, 150, 200, 0, False, 1.0), (360, 130, 150, -15, True, 0.8), (560, 150, 170, 20, False, 1.15),
          (790, 140, 130, -25, False, 0.6), (110, 460, 110, 10, True, 1.0), (300, 470, 90, 0, False, 1.3),
          (480, 470, 70, -10, True, 0.9), (640, 480, 55, 5, False, 1.0), (800, 470, 40, 0, True, 0.75)]


def crowd(portrait: np.ndarray) -> np.ndarray:
    canvas = np.full((640, 960, 3), 118, np.uint8)
    for cx, cy, side, degrees, mirrored, light in PEOPLE:
        face = cv2.resize(portrait, (side, side), interpolation=cv2.INTER_AREA)
        face = face[:, ::-1] if mirrored else face
        turn = cv2.getRotationMatrix2D((side / 2, side / 2), degrees, 1.0)
        face = cv2.warpAffine(face, turn, (side, side), borderMode=cv2.BORDER_REFLECT)
        face = np.clip(face.astype(np.float32) * light, 0, 255).astype(np.uint8)
        y0, x0 = cy - side // 2, cx - side // 2
        canvas[y0 : y0 + side, x0 : x0 + side] = face
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_smoke_args(parser)  # the photo is small already: --smoke only keeps it out of docs/
    args = parser.parse_args()
    shared = Path(os.environ.get("FERKIT_SHARED", REPO.parent / "shared"))
    path = shared / "data" / "photos" / "astronaut.png"
    if not path.is_file():
        raise SystemExit(f"{path} not found: the crowd is made of the astronaut portrait (FERKIT_SHARED)")
    out = results_dir(args) if args.smoke or args.results_dir else REPO / "docs"
    portrait = cv2.imread(str(path))[20:280, 120:380]  # the head
    cv2.imwrite(str(out / "crowd.jpg"), crowd(portrait), [cv2.IMWRITE_JPEG_QUALITY, 88])


if __name__ == "__main__":
    main()
