"""Does the robustness benchmark's contrast normalisation help on real photos? ExpW-dev scores of
each model with and without `normalise_contrast` applied to every crop before the classifier.

    python benchmarks/normalise_on_photos.py default large
    python benchmarks/normalise_on_photos.py --smoke   # seconds: default, 12 ExpW-dev photos (prints only)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from repo_support import add_smoke_args

from ferkit.data.labelled_photos import load_labelled_photos
from ferkit.evaluate.photos import evaluate_photos
from ferkit.evaluate.robustness import normalise_contrast
from ferkit.inference import Recognizer

SHARED = Path(os.environ.get("FERKIT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
SMOKE_PHOTOS = 12


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="*", default=["default", "large"])
    add_smoke_args(parser)  # nothing is written: the scores are printed
    args = parser.parse_args()
    expw = SHARED / "data" / "expw-dev"
    if not (expw / "labels.csv").is_file():
        raise SystemExit(f"{expw}/labels.csv not found: ExpW-dev is needed (FERKIT_SHARED)")
    data = load_labelled_photos(expw)
    if args.smoke:
        args.models = ["default"]
        step = max(1, len(data.photos) // SMOKE_PHOTOS)  # spread out: labels.csv runs class by class
        data = dataclasses.replace(data, photos=data.photos[::step][:SMOKE_PHOTOS])
    for model in args.models:
        for normalised in (False, True):
            recognizer = Recognizer(model)
            if normalised:
                raw = recognizer.classify
                recognizer.classify = lambda faces, tta=False, raw=raw: raw(normalise_contrast(faces), tta)
            m = evaluate_photos(recognizer, data, progress=False)
            print(f"{model:10s} {'normalised' if normalised else 'as is':10s} classifier alone "
                  f"{m['classifier']['accuracy']:.4f} (macro-F1 {m['classifier']['macro_f1']:.4f}), "
                  f"end to end {m['end_to_end']['accuracy']:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
