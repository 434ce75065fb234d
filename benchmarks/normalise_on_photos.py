"""Does the robustness benchmark's contrast normalisation help on real photos? ExpW-dev scores of
each model with and without `normalise_contrast` applied to every crop before the classifier.

    python benchmarks/normalise_on_photos.py default large
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ferkit.data.labelled_photos import load_labelled_photos
from ferkit.evaluate.photos import evaluate_photos
from ferkit.evaluate.robustness import normalise_contrast
from ferkit.inference import Recognizer

SHARED = Path(os.environ.get("FERKIT_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def main(models: list[str]) -> int:
    data = load_labelled_photos(SHARED / "data" / "expw-dev")
    for model in models or ["default", "large"]:
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
    raise SystemExit(main(sys.argv[1:]))
