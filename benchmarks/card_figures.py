"""Every shipped model's headline figures, measured the same way, written into its card.

``ferkit model list``, ``/v1/models`` and the web page show these figures (through
:mod:`ferkit.models.card`); before this script the cards held whatever each training run happened
to score, under different priors and with ExpW-dev missing for the FER2013-label models. Here each
model is scored by ferkit's own evaluation (onnxruntime, the card's temperature), under both class
priors (``natural``: the network as trained; ``balanced``: what ``--prior auto`` gives), on:

- FER2013 PrivateTest, with its own labels and with the FER+ majority labels (3,518 faces):
  what ``ferkit eval --model NAME --data fer2013.csv.gz --prior P --json`` prints;
- ExpW-dev (1,920 labelled faces in 1,806 web photos; measured only, never trained on): end to
  end (YuNet, the aligned crop; a missed face is wrong) and classifier alone, as
  ``ferkit eval --model NAME --data expw-dev --prior P --json`` prints;
- speed: crops/s of onnxruntime at batch 64 with 2 threads, the models timed in alternating
  windows so that load from other work falls on all alike; the CPU is named.

Writes benchmarks/results/card_figures.json and .md and each card's ``figures`` section:

    .venv/bin/python benchmarks/card_figures.py
    .venv/bin/python benchmarks/card_figures.py --speed-only   # re-time on a quieter machine
    .venv/bin/python benchmarks/card_figures.py --smoke   # seconds: `paper`, 6 photos; cards untouched
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from repo_support import add_smoke_args, results_dir, write_text
from timing import cpu_model, window_rate

from ferkit.data.labelled_photos import load_labelled_photos
from ferkit.evaluate.crops import evaluate_model
from ferkit.evaluate.photos import evaluate_photos
from ferkit.inference import Recognizer
from ferkit.models.store import CARD_SUFFIX, WEIGHTS_DIR, list_models, read_card, write_json
from ferkit.runtime.loader import load_classifier

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FERKIT_SHARED", REPO.parent / "shared"))
PRIORS = ("balanced", "natural")
BATCH, THREADS = 64, 2
SMOKE_PHOTOS = 6
COMMAND = ".venv/bin/python benchmarks/card_figures.py"


def crop_scores(name: str, data: str, prior: str) -> dict[str, float | int]:
    """FER2013 PrivateTest under its own labels and the FER+ majority labels."""
    m = evaluate_model(name, data, "test", prior=prior)
    scores: dict[str, float | int] = {"fer2013_test_accuracy": m["accuracy"],
                                      "fer2013_test_macro_f1": m["macro_f1"], "fer2013_test_n": m["n"]}
    if "ferplus" in m:
        f = m["ferplus"]
        scores |= {"ferplus_test_accuracy": f["accuracy"], "ferplus_test_macro_f1": f["macro_f1"],
                   "ferplus_test_n": f["n"]}
    return scores


def photo_scores(name: str, photos, prior: str) -> dict[str, float | int]:
    """ExpW-dev end to end and classifier alone, with the Recognizer's default detector."""
    m = evaluate_photos(Recognizer(name, backend="onnx", prior=prior), photos, progress=False)
    e, c = m["end_to_end"], m["classifier"]
    return {"expw_dev_end_to_end_accuracy": e["accuracy"], "expw_dev_end_to_end_macro_f1": e["macro_f1"],
            "expw_dev_found_rate": e["found_rate"], "expw_dev_classifier_accuracy": c["accuracy"],
            "expw_dev_classifier_macro_f1": c["macro_f1"], "expw_dev_n": m["n"],
            "expw_dev_end_to_end_worst_recall": e["worst_recall"],
            "expw_dev_end_to_end_worst_class": e["worst_class"],
            "expw_dev_classifier_ece": c["calibration"]["ece"],
            "expw_dev_detector": m["detector"]}


def crop_rates(names: list[str], rounds: int, seconds: float, batch: int) -> dict[str, dict[str, float]]:
    """{model: {best, mean, windows}} crops/s, the runtime as ``ferkit predict`` loads it."""
    faces = np.random.default_rng(0).integers(0, 256, (batch, 48, 48), dtype=np.uint8)
    runners = {name: load_classifier(name, "onnx", threads=THREADS)[0] for name in names}
    rates: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        for name, runner in runners.items():
            rates[name].append(window_rate(lambda r=runner: r.probabilities(faces), batch, seconds))
    return {n: {"best": max(r), "mean": sum(r) / len(r), "windows": len(r)} for n, r in rates.items()}


def card_section(row: dict, result: dict) -> dict:
    """The ``figures`` section written into a model's card."""
    env, timed = result["environment"], result["speed_run"]
    return {
        "command": result["command"], "date": result["date"],
        "how": ("ferkit's own evaluation (onnxruntime, the card's temperature) under each class prior: "
                "FER2013 PrivateTest with its labels and with the FER+ majority labels, as `ferkit eval "
                "--model NAME --data ../shared/data/fer2013/fer2013.csv.gz --prior P --json`; ExpW-dev "
                "end to end (YuNet, aligned crop; a missed face counts as wrong) and classifier alone, "
                "as `ferkit eval --model NAME --data ../shared/data/expw-dev --prior P --json` (the card's "
                "photo calibration there, its crop calibration on FER2013). "
                "`ferkit model list` shows the scores under the prior --prior auto gives (balanced)."),
        "by_prior": row["by_prior"],
        "speed": {"crops_per_s": row["speed"]["best"], "mean": row["speed"]["mean"],
                  "windows": row["speed"]["windows"],
                  "on": f"{timed['cpu']}, {env['cpus']} cores, onnxruntime {THREADS} threads, batch {BATCH}",
                  "date": timed["date"], "load_average": timed["load_average"],
                  "source": "benchmarks/results/card_figures.json"},
    }


def write_markdown(result: dict, path: Path) -> None:
    env = result["environment"]
    lines = ["# Shipped models' headline figures (their cards)", "",
             f"Command: `{result['command']}`  ", f"Date: {result['date']}  ",
             f"Machine: {env['cpu']}, {env['cpus']} CPUs, load average "
             f"{', '.join(f'{v:.1f}' for v in env['load_average'])} at the end (other work beside it).  ",
             f"Speed timed by `{result['speed_run']['command']}` at {result['speed_run']['date']}, load "
             f"average {', '.join(f'{v:.1f}' for v in result['speed_run']['load_average'])} after.", "",
             "Accuracy / macro-F1. FER+: PrivateTest, majority labels; ExpW-dev: end to end over all "
             "labelled faces (a missed face is wrong); FER2013: PrivateTest, its own labels. crops/s: "
             f"onnxruntime, batch {BATCH}, {THREADS} threads, best of alternating windows (mean).", "",
             "| model | prior | FER+ PrivateTest | ExpW-dev end to end | ExpW-dev classifier alone "
             "| FER2013 PrivateTest | crops/s |",
             "| --- | --- | --- | --- | --- | --- | ---: |"]
    for name, row in result["models"].items():
        speed = f"{row['speed']['best']:,.0f} ({row['speed']['mean']:,.0f})"
        for prior, s in row["by_prior"].items():
            ferplus = (f"{s['ferplus_test_accuracy']:.2%} / {s['ferplus_test_macro_f1']:.3f}"
                       if "ferplus_test_accuracy" in s else "–")
            lines.append(
                f"| {name} | {prior} | {ferplus} | {s['expw_dev_end_to_end_accuracy']:.2%} / "
                f"{s['expw_dev_end_to_end_macro_f1']:.3f} | {s['expw_dev_classifier_accuracy']:.2%} / "
                f"{s['expw_dev_classifier_macro_f1']:.3f} | {s['fer2013_test_accuracy']:.2%} / "
                f"{s['fer2013_test_macro_f1']:.3f} | {speed} |")
    write_text(path, "\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(SHARED / "data" / "fer2013" / "fer2013.csv.gz"),
                        help="the FER2013 challenge CSV (FER+ votes beside it, ../ferplus)")
    parser.add_argument("--expw", default=str(SHARED / "data" / "expw-dev"), help="ExpW-dev folder")
    parser.add_argument("--models", nargs="+", help="shipped models (default: all)")
    parser.add_argument("--rounds", type=int, default=7, help="timing windows per model")
    parser.add_argument("--window", type=float, default=1.0, help="seconds per timing window")
    parser.add_argument("--no-cards", action="store_true", help="write the results only, not the cards")
    parser.add_argument("--speed-only", action="store_true",
                        help="re-time only, keeping the scores of the results folder's card_figures.json "
                             "(they do not depend on the machine's load; the speed does)")
    parser.add_argument("--scores-only", action="store_true",
                        help="re-score only, keeping the speed of the results folder's card_figures.json "
                             "(a model's calibration or prior changed; the graphs did not)")
    add_smoke_args(parser)
    args = parser.parse_args()
    for needed in (Path(args.data), Path(args.expw) / "labels.csv"):
        if not needed.exists():
            raise SystemExit(f"{needed} not found: card_figures needs FER2013 (--data) and ExpW-dev (--expw)")
    out = results_dir(args)
    names = args.models or list_models()
    photos = load_labelled_photos(args.expw)
    if args.smoke:  # the cards are the shipped ones: a smoke run never writes them
        names, args.rounds, args.window, args.no_cards, args.speed_only = ["paper"], 1, 0.05, True, False
        args.scores_only = False
        step = max(1, len(photos.photos) // SMOKE_PHOTOS)  # spread out: labels.csv runs class by class
        photos = dataclasses.replace(photos, photos=photos.photos[::step][:SMOKE_PHOTOS])
    unknown = sorted(set(names) - set(list_models()))
    if unknown:
        raise SystemExit(f"not shipped models: {', '.join(unknown)}")
    command = COMMAND + "".join(f" {a}" for a in sys.argv[1:])
    if args.speed_only:
        result = json.loads((out / "card_figures.json").read_text())
        names = list(result["models"])
    else:
        result = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M"), "models": {}}
        for name in names:
            by_prior = {}
            for prior in PRIORS:
                print(f"{name}, prior {prior} ...", file=sys.stderr, flush=True)
                by_prior[prior] = crop_scores(name, args.data, prior) | photo_scores(name, photos, prior)
            result["models"][name] = {"by_prior": by_prior}
        result["environment"] = {"cpu": cpu_model(), "cpus": os.cpu_count(), "load_average": os.getloadavg()}
    if args.scores_only:
        before = json.loads((out / "card_figures.json").read_text())
        for name in names:
            result["models"][name]["speed"] = before["models"][name]["speed"]
        result["speed_run"] = before["speed_run"]
    else:
        for name, speed in crop_rates(names, args.rounds, args.window, BATCH).items():
            result["models"][name]["speed"] = speed
        result["speed_run"] = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M"),
                               "cpu": cpu_model(), "load_average": os.getloadavg()}
    models = result["models"]
    write_json(out / "card_figures.json", result)
    write_markdown(result, out / "card_figures.md")
    if not args.no_cards:
        for name, row in models.items():
            path = WEIGHTS_DIR / f"{name}{CARD_SUFFIX}"
            write_json(path, read_card(path) | {"figures": card_section(row, result)})
            print(f"wrote {path}", file=sys.stderr)
    print((out / "card_figures.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
