"""Robustness benchmark: FER2013 PrivateTest under eight corruptions at five severities, every
shipped ferkit model and `fer` in one run, scored against FER2013's labels and the FER+ majority.

Corruptions and severities: :mod:`ferkit.evaluate.robustness` (ImageNet-C's recipe adapted to
48x48 gray faces; deterministic for ``--seed``). Each corrupted set is made once and classified
by every system. The corrupted sets are made from one sample of PrivateTest (``--faces``,
stratified by label, seeded; 0: all 3,589), the same faces in every condition, so that the run
fits in about 15 minutes on one core of a slow CPU; every system is also scored clean on all of
PrivateTest. ferkit's models run through onnxruntime as ``ferkit eval`` runs them (one thread
here: other jobs share the CPU). `fer` 25.10.3 runs in its own virtualenv (``.venv-fer``, made
by ``benchmarks/setup_fer_venv.sh``) as a ``benchmarks/fer_reference.py`` subprocess: its
default TFLite classifier on each crop resized to its 64x64 input; without that virtualenv its
column is skipped with the reason. Writes benchmarks/results/robustness.json, .md, .png
(accuracy against severity, one panel per corruption, one line per system) and
robustness_examples.png (one face under every condition):

    .venv/bin/python benchmarks/robustness.py
    .venv/bin/python benchmarks/robustness.py --smoke   # seconds: `default` (+ normalised), 32 of 128 faces
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from ablation import fer_slice
from inference import concurrent_training, start_fer
from repo_support import add_smoke_args, results_dir, save_figure, write_results
from timing import cpu_model

from ferkit.data.ferplus import default_votes_path
from ferkit.evaluate.robustness import (
    CORRUPTIONS,
    PARAMETERS,
    SEVERITIES,
    TYPICAL_MEAN,
    TYPICAL_STD,
    corrupt,
    evaluate_robustness,
    load_test_faces,
    normalise_contrast,
)
from ferkit.models.store import list_models
from ferkit.runtime.backends import classify
from ferkit.runtime.loader import load_classifier

REPO = Path(__file__).resolve().parents[1]
LABEL_SETS = {"ferplus": "FER+ majority labels", "fer2013": "FER2013's own labels"}
# Faces corrupted by default: 41 sets of 1,200 faces through seven systems took 15 minutes on one
# core of a 2 GHz AMD EPYC (AVX2) beside other jobs, where `default` classifies about 800 faces a
# second and `large` 230; all 3,589 faces take about three times as long.
FACES = 1200


def ferkit_classifier(model: str, threads: int, normalise: bool = False):
    """(name, faces -> classes) of a model through onnxruntime; with ``normalise`` each face's
    brightness and contrast are set to FER2013's typical ones first."""
    runner, card = load_classifier(model, "onnx", threads)
    if normalise:
        return f"{card['name']} + normalised", lambda x: classify(runner, normalise_contrast(x)).argmax(1)
    return card["name"], lambda faces: classify(runner, faces).argmax(1)


def fer_classifier(fer, folder: Path):
    path = folder / "faces.npy"

    def run(faces: np.ndarray) -> np.ndarray:
        np.save(path, faces)
        return np.array(fer.ask(task="classify", path=str(path))["labels"], np.int64)

    return run


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def markdown(result: dict) -> str:
    systems = result["systems"]
    env = result["environment"]
    data = result["data"]
    training = env["concurrent_training"]
    lines = [
        "# Robustness: FER2013 PrivateTest under corruptions", "",
        f"Command: `{result['command']}`  ", f"Date: {result['date']}  ",
        f"Machine: {env['cpu']}, {env['cpus']} CPUs, onnxruntime {env['onnxruntime']} on {env['threads']} "
        f"thread(s); load average {', '.join(f'{v:.1f}' for v in env['load_average'])} at the end"
        + (f"; {len(training)} training job(s) beside it" if training else "")
        + f"; {result['seconds']:.0f} s in all.  ",
        f"Data: {data['path']} PrivateTest. Corrupted sets: {data['n_fer2013']} of its {data['all_fer2013']} "
        f"faces (a sample stratified by FER2013 label, seed {result['seed']}; the same faces in every "
        f"condition and for every system), {data['n_ferplus']} of them with a FER+ majority among the "
        f"seven classes (of all PrivateTest, FER+'s protocol leaves out "
        + ", ".join(f"{k} {v}" for k, v in data["ferplus_left_out"].items())
        + f"). Corruption seed {result['seed']}. Single pass, no TTA.  ",
        "Systems: " + "; ".join(f"`{name}`" for name in systems)
        + (f". fer: skipped ({result['fer_skipped']})" if result.get("fer_skipped") else "") + ".  ",
        "`MODEL + normalised`: the same graph with each face's brightness and contrast set to the median "
        f"of FER2013's Training faces (mean {TYPICAL_MEAN}, standard deviation {TYPICAL_STD}) before it "
        "classifies (`normalise_contrast` in `ferkit/evaluate/robustness.py`): a test-time change, no "
        "retraining." if any(name.endswith(" + normalised") for name in systems) else "", "",
        "Severities (ImageNet-C's recipe adapted to 48x48 gray faces; definitions in "
        "`ferkit/evaluate/robustness.py`, one face under each in "
        "[robustness_examples.png](robustness_examples.png)):", "",
        "| corruption | parameter | " + " | ".join(f"s{s}" for s in range(1, SEVERITIES + 1)) + " |",
        "| --- | --- |" + " ---: |" * SEVERITIES,
    ]
    for c, (what, values) in PARAMETERS.items():
        lines.append(f"| {c} | {what} | " + " | ".join(f"{v:g}" for v in values) + " |")
    lines += ["", "![accuracy against severity](robustness.png)", ""]
    for labels, title in LABEL_SETS.items():
        lines += [f"## Summary, {title}", "",
                  "Accuracy in %: clean on all of PrivateTest, then on the sample: clean, mean corruption "
                  "accuracy (mCA, over all 40 corrupted sets), its drop from clean in points, mCA / clean, "
                  "and each corruption's mean over severities 1-5.", "",
                  "| system | clean, all | clean | mCA | drop | mCA/clean | "
                  + " | ".join(CORRUPTIONS) + " |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |" + " ---: |" * len(CORRUPTIONS)]
        for name, s in systems.items():
            r = s[labels]
            lines.append(f"| {name} | {pct(s['clean_all'][labels]['accuracy'])} | {pct(r['clean'])} | "
                         f"**{pct(r['mean_corruption_accuracy'])}** | {pct(r['drop'])} | "
                         f"{r['relative']:.3f} | "
                         + " | ".join(pct(r["per_corruption"][c]) for c in CORRUPTIONS) + " |")
        lines.append("")
    lines += ["## Per severity", "",
              "Accuracy in %, FER+ majority labels / FER2013's own labels.", ""]
    for c, (what, values) in PARAMETERS.items():
        lines += [f"### {c} ({what}: {', '.join(f'{v:g}' for v in values)})", "",
                  "| system | clean | " + " | ".join(f"s{s}" for s in range(1, SEVERITIES + 1)) + " | mean |",
                  "| --- | ---: |" + " ---: |" * (SEVERITIES + 1)]
        for name, s in systems.items():
            f, o = s["ferplus"], s["fer2013"]
            cells = [f"{pct(f['clean'])} / {pct(o['clean'])}"]
            pairs = zip(f["per_severity"][c], o["per_severity"][c], strict=True)
            cells += [f"{pct(a)} / {pct(b)}" for a, b in pairs]
            cells.append(f"{pct(f['per_corruption'][c])} / {pct(o['per_corruption'][c])}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def figure(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = result["systems"]
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5), sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    x = np.arange(SEVERITIES + 1)
    for ax, (c, (what, values)) in zip(axes.flat, PARAMETERS.items(), strict=True):
        for k, s in enumerate(systems.values()):
            for labels, style in (("ferplus", "-"), ("fer2013", "--")):
                r = s[labels]
                y = 100 * np.array([r["clean"], *r["per_severity"][c]])
                ax.plot(x, y, style, marker="o", markersize=3, color=colours[k % len(colours)])
        ax.set_title(f"{c}\n{what}: {', '.join(f'{v:g}' for v in values)}", fontsize=9)
        ax.set_xticks(x, ["clean", *map(str, range(1, SEVERITIES + 1))])
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy, %")
    for ax in axes[1]:
        ax.set_xlabel("severity")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colours[k % len(colours)], marker="o", markersize=3)
               for k in range(len(systems))]
    handles += [Line2D([], [], color="black", linestyle=style) for style in ("-", "--")]
    names = [*systems, *LABEL_SETS.values()]
    fig.legend(handles, names, loc="lower center", ncol=min(5, len(names)), fontsize=9, frameon=False)
    data = result["data"]
    fig.suptitle(f"FER2013 PrivateTest under corruptions (solid: {LABEL_SETS['ferplus']}, n = "
                 f"{data['n_ferplus']}; dashed: {LABEL_SETS['fer2013']}, n = {data['n_fer2013']})")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def typical_face(images: np.ndarray) -> np.ndarray:
    """The face shown in robustness_examples.png: of the faces with more than the median contrast,
    the one whose mean brightness is nearest the median."""
    means, stds = images.mean((1, 2)), images.std((1, 2))
    candidates = np.flatnonzero(stds > np.median(stds))
    return images[candidates[np.argmin(np.abs(means[candidates] - np.median(means)))]]


def examples_figure(face: np.ndarray, seed: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, columns = len(CORRUPTIONS), SEVERITIES + 1
    fig, axes = plt.subplots(rows, columns, figsize=(1.3 * columns, 1.35 * rows))
    for row, c in zip(axes, CORRUPTIONS, strict=True):
        for s, ax in enumerate(row):
            ax.imshow(corrupt(face, c, s, seed), cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if s == 0:
                ax.set_ylabel(c, fontsize=8)
    for s, ax in enumerate(axes[0]):
        ax.set_title("clean" if s == 0 else f"s{s}", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shared = Path(os.environ.get("FERKIT_SHARED", REPO.parent / "shared"))
    parser.add_argument("--data", default=str(shared / "data" / "fer2013" / "fer2013.csv.gz"),
                        help="the FER2013 challenge CSV")
    parser.add_argument("--votes", help="FER+ votes (default: the shared layout's, beside the data)")
    parser.add_argument("--models", nargs="+", default=list_models(), help="ferkit models (default: all)")
    parser.add_argument("--normalise", nargs="*", default=["default", "paper"],
                        help="models also run with each face's brightness and contrast normalised "
                        "(ferkit.evaluate.robustness.normalise_contrast) before the classifier")
    parser.add_argument("--no-fer", action="store_true", help="leave out the fer package")
    parser.add_argument("--seed", type=int, default=0, help="seed of the corruptions")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per model")
    parser.add_argument("--faces", type=int, default=FACES,
                        help="PrivateTest faces to corrupt, a stratified sample (0: all 3,589)")
    parser.add_argument("--out", dest="results_dir", type=Path, help="the same as --results-dir")
    add_smoke_args(parser)
    args = parser.parse_args()
    start = time.perf_counter()
    if not Path(args.data).is_file():
        sys.exit(f"{args.data} not found: the FER2013 challenge CSV is needed (--data or $FERKIT_SHARED)")
    if not (args.votes or default_votes_path(args.data)):
        sys.exit(f"no FER+ votes beside {args.data}: name the votes file (--votes)")
    out = results_dir(args)
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:  # the first model (and it normalised), 32 of 128 PrivateTest faces
            args.models, args.normalise, args.faces = args.models[:1], args.normalise[:1], 32
            args.data = str(fer_slice(args.data, Path(tmp), 8, 8, 128, args.votes))
            args.votes = None  # the slice's, beside it
        full = load_test_faces(args.data, args.votes)
        faces = full.sample(args.faces, args.seed)
        classifiers = dict(ferkit_classifier(m, args.threads) for m in args.models)
        classifiers |= dict(ferkit_classifier(m, args.threads, normalise=True) for m in args.normalise)
        fer = "--no-fer given" if args.no_fer else start_fer()
        if isinstance(fer, str):
            print(f"fer skipped: {fer}", file=sys.stderr)
        fer_info: dict = {}
        if not isinstance(fer, str):
            fer_info = fer.ask(task="info")
            classifiers[f"fer {fer_info['fer']} (TFLite)"] = fer_classifier(fer, Path(tmp))

        def progress(key: str) -> None:
            print(f"{time.perf_counter() - start:6.0f} s  {key}", file=sys.stderr, flush=True)

        systems = evaluate_robustness(classifiers, faces, args.seed, progress, full=full)
        if not isinstance(fer, str):
            fer.close()
    import onnxruntime

    command = ".venv/bin/python benchmarks/robustness.py" + "".join(f" {a}" for a in sys.argv[1:])
    result = {
        "command": command, "date": time.strftime("%Y-%m-%d %H:%M"),
        "environment": {"cpu": cpu_model(), "cpus": os.cpu_count(), "threads": args.threads,
                        "onnxruntime": onnxruntime.__version__, "load_average": os.getloadavg(),
                        "concurrent_training": concurrent_training(), "fer": fer_info},
        "data": {"path": args.data, "votes": faces.votes, "n_fer2013": len(faces.labels),
                 "n_ferplus": len(faces.ferplus_labels), "all_fer2013": len(full.labels),
                 "all_ferplus": len(full.ferplus_labels), "ferplus_left_out": faces.ferplus_left_out},
        "seed": args.seed,
        "severities": {c: {"parameter": w, "values": v} for c, (w, v) in PARAMETERS.items()},
        "fer_skipped": fer if isinstance(fer, str) else None,
        "seconds": round(time.perf_counter() - start, 1),
        "systems": systems,
    }
    figure(result, out / "robustness.png")
    examples_figure(typical_face(full.images), args.seed, out / "robustness_examples.png")
    write_results(out, "robustness", result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
