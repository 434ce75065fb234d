"""The ablation table the paper lacks: the plain CNN backbone, then shortcuts, SE attention,
separable convolutions and augmentation added one by one, and the full model without each part.

Every row trains with the same budget (``--config``; by default ``configs/ablation.toml``: paper_net
at the shipped `paper` widths, 5 epochs) on the canonical split, selects its epoch on PublicTest,
and is scored on PrivateTest. Results go to ``--out`` + ``.md`` / ``.json`` (``results/ablation``).

    python benchmarks/ablation.py --data ../shared/data/fer2013/fer2013.csv.gz [--seeds 0 1]
    python benchmarks/ablation.py --smoke   # seconds: 1 row, 1 seed, 1 epoch on 64 faces

The full budget (the paper's recipe, ``configs/paper.toml``: 40 epochs, early stopping) is
``--config configs/paper.toml``; ``--jobs N`` trains N rows at once (a GPU machine:
benchmarks/gpu_ablation.sh). Rows already in the output's JSON are reused, so a later session
can add a seed; run folders that hold a checkpoint resume.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import tomllib
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from repo_support import add_smoke_args, results_dir, write_text

from ferkit.data.slices import slice_fer
from ferkit.errors import DataError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = "configs/ablation.toml"
NO_AUG = ["augment.rotation=0", "augment.shift=0", "augment.zoom=0", "augment.hflip=false"]
PLAIN = ["model.se=false", "model.separable=false", "model.shortcut=false"]
ROWS: list[tuple[str, list[str]]] = [
    ("plain CNN backbone", PLAIN + NO_AUG),
    ("+ shortcuts", ["model.se=false", "model.separable=false"] + NO_AUG),
    ("+ SE attention", ["model.separable=false"] + NO_AUG),
    ("+ separable convolutions", NO_AUG),
    ("+ augmentation (full paper model)", []),
    ("full without SE", ["model.se=false"]),
    ("full without separable convolutions", ["model.separable=false"]),
    ("full without shortcuts", ["model.shortcut=false"]),
]
SMOKE_ROWS = (0,)  # --smoke: the plain backbone (every model and augment key overridden), 1 seed


def fer_slice(data: str | Path, folder: Path, train: int, val: int, test: int,
              votes: str | Path | None = None) -> Path:
    """The first ``train`` Training, ``val`` PublicTest and ``test`` PrivateTest rows of the
    challenge CSV ``data`` (real faces), with their FER+ votes, laid out in ``folder`` as ferkit
    looks for them (:func:`ferkit.data.slices.slice_fer`): the data of the benchmarks' smoke modes."""
    counts = {"Training": train, "PublicTest": val, "PrivateTest": test}
    try:
        return slice_fer(data, folder, counts, votes)
    except DataError as exc:
        sys.exit(str(exc))


def run_row(config: str, data: str, out: str, overrides: list[str], seed: int) -> tuple[str, dict]:
    """Train one row (or resume it) unless its run folder has test metrics; its log goes beside
    the folder, so rows trained in parallel keep their progress bars apart."""
    cmd = ["ferkit", "train", "--config", config, "--data", data, "--out", out, f"seed={seed}", *overrides]
    folder = REPO / out
    if not (folder / "metrics_test.json").is_file():
        # A killed row continues from its checkpoint (train refuses --resume without one).
        resume = ["--resume"] if (folder / "checkpoint.pt").is_file() else []
        folder.parent.mkdir(parents=True, exist_ok=True)
        with open(folder.with_suffix(".log"), "a") as log:
            subprocess.run([sys.executable, "-m", "ferkit", *cmd[1:], *resume], cwd=REPO, check=True,
                           stdout=log, stderr=subprocess.STDOUT)
    metrics = json.loads((folder / "metrics_test.json").read_text())
    return " ".join(shlex.quote(c) for c in cmd), metrics


def measured_rows(path: Path, budget: str) -> dict[tuple[str, int], dict]:
    """Rows already in the output's JSON, by (row name, seed): a later session adds seeds
    without retraining the earlier ones. Rows of another budget are refused, not mixed in."""
    if not path.is_file():
        return {}
    rows = json.loads(path.read_text())
    other = {r.get("budget", DEFAULT_CONFIG) for r in rows} - {budget}
    if other:
        sys.exit(f"{path} holds rows of another budget ({', '.join(sorted(other))}); "
                 "choose another --out and --runs, or pass --retrain")
    return {(r["row"], r["seed"]): r for r in rows}


def default_place(config: str, root: str) -> str:
    """runs/ablation and results/ablation for the 5-epoch budget; ...-<config name> for others,
    so that rows of two budgets never share a folder or a table."""
    return root if config == DEFAULT_CONFIG else f"{root}-{Path(config).stem}"


def main() -> None:
    ap = argparse.ArgumentParser(epilog="Config overrides go after every option (or after --).")
    ap.add_argument("--data", default=os.environ.get("FERKIT_SHARED", "../shared")
                    + "/data/fer2013/fer2013.csv.gz")
    ap.add_argument("--config", default=DEFAULT_CONFIG,
                    help="the budget of every row (configs/paper.toml: the paper's full recipe)")
    ap.add_argument("--runs", help="run folders (default runs/ablation[-CONFIG])")
    ap.add_argument("--out", help="output stem: STEM.md and STEM.json (default results/ablation[-CONFIG])")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--jobs", type=int, default=1, help="rows trained at once")
    ap.add_argument("--machine", default="the 2-core CPU machine", help="where it ran, for the table")
    ap.add_argument("--retrain", action="store_true", help="ignore rows in the output's JSON "
                    "(finished run folders under --runs are still reused: delete them to retrain)")
    ap.add_argument("overrides", nargs="*", help="config overrides for every row, e.g. threads=1")
    add_smoke_args(ap)
    args = ap.parse_args()
    rows = [(i, name, overrides) for i, (name, overrides) in enumerate(ROWS)
            if not args.smoke or i in SMOKE_ROWS]
    if args.smoke:
        args.seeds, args.overrides = [0], [*args.overrides, "epochs=1"]
    if args.smoke or args.results_dir is not None:  # the runs of a smoke study stay beside its table
        where = results_dir(args)
        runs = args.runs or str(where / "runs")
        stem = REPO / args.out if args.out else where / "ablation"
    else:
        runs = args.runs or default_place(args.config, "runs/ablation")
        stem = REPO / (args.out or default_place(args.config, "results/ablation"))
    if not (REPO / args.data).exists():  # rows train from the repository root
        sys.exit(f"{args.data} not found: the ablation trains on FER2013 (--data)")
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:  # one batch of Training faces, 32 PublicTest and 32 PrivateTest faces
            args.data = str(fer_slice(REPO / args.data, Path(tmp), 64, 32, 32))
        study(args, rows, runs, stem)


def study(args: argparse.Namespace, rows: list[tuple[int, str, list[str]]], runs: str, stem: Path) -> None:
    """Train every row not yet measured (seed by seed), writing the table after each."""
    budget = " ".join([args.config, *args.overrides])
    measured = {} if args.retrain else measured_rows(stem.with_suffix(".json"), budget)  # other seeds stay
    order = {name: i for i, (name, _) in enumerate(ROWS)}
    # seed by seed: a cut-short study still has every row once
    todo = [(seed, i, name, overrides) for seed in args.seeds for i, name, overrides in rows
            if (name, seed) not in measured]

    def train(seed: int, i: int, name: str, overrides: list[str]) -> dict:
        command, m = run_row(args.config, args.data, f"{runs}/row{i}-seed{seed}",
                             [*overrides, *args.overrides], seed)
        s = m["summary"]
        return {"row": name, "seed": seed, "test_accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                "params": s["params"], "train_minutes": s["train_minutes"], "best_epoch": s["best_epoch"],
                "epochs_run": s.get("epochs_run"), "budget": budget, "command": command}

    failed: list[str] = []
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = {pool.submit(train, *item): item for item in todo}
        for future in as_completed(futures):  # after every row: a cut-short study still leaves its table
            seed, i, name, _ = futures[future]
            try:
                measured[(name, seed)] = row = future.result()
            except Exception as e:  # report the row and go on with the others
                failed.append(f"{name} seed {seed}")
                print(f"{name:40s} seed {seed}: FAILED ({e}), see {runs}/row{i}-seed{seed}.log", flush=True)
                continue
            print(f"{name:40s} seed {seed}: acc {row['test_accuracy']:.4f}", flush=True)
            write(stem, sorted(measured.values(), key=lambda r: (r["seed"], order[r["row"]])),
                  args.config, args.machine, args.overrides)
    write(stem, sorted(measured.values(), key=lambda r: (r["seed"], order[r["row"]])),
          args.config, args.machine, args.overrides)
    if failed:
        sys.exit(f"{len(failed)} row(s) failed: {', '.join(failed)}")


def write(stem: Path, rows: list[dict], config: str, machine: str, overrides: list[str]) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_text(stem.with_suffix(".json"), json.dumps(rows, indent=2) + "\n")
    write_text(stem.with_suffix(".md"), render(rows, config, machine, overrides))


def summarise(rows: list[dict]) -> list[dict]:
    """One line per ablation row: accuracy per seed, means over seeds, in the order of ROWS."""
    out = []
    for name, _ in ROWS:
        mine = sorted((r for r in rows if r["row"] == name), key=lambda r: r["seed"])
        if mine:
            n = len(mine)
            out.append({"row": name, "acc": {r["seed"]: r["test_accuracy"] for r in mine},
                        "mean_acc": sum(r["test_accuracy"] for r in mine) / n,
                        "mean_f1": sum(r["macro_f1"] for r in mine) / n, "params": mine[0]["params"],
                        "mean_minutes": sum(r["train_minutes"] for r in mine) / n,
                        # early stopping ends rows at different epochs: best / run, per seed
                        "epochs": ", ".join(f"{r['best_epoch']}/{r['epochs_run']}" if r.get("epochs_run")
                                            else str(r["best_epoch"]) for r in mine)})
    return out


def render(rows: list[dict], config_path: str = "configs/ablation.toml",
           machine: str = "the 2-core CPU machine", overrides: tuple[str, ...] | list[str] = ()) -> str:
    config = (REPO / config_path).read_text()
    epochs = tomllib.loads(config).get("epochs")
    for o in overrides:  # the budget as it ran
        if o.startswith("epochs="):
            value = o.split("=", 1)[1]
            epochs = int(value) if value.isdigit() else None
    seeds = sorted({r["seed"] for r in rows})
    table = summarise(rows)
    lines = ["# Ablation study (canonical split: train on Training, select on PublicTest, "
             "score on PrivateTest)", "",
             f"One budget for every row (`{config_path}`, {epochs} epochs), {len(seeds)} seed(s) per row "
             f"({', '.join(map(str, seeds))}). Train minutes: time in training steps (validation and "
             f"checkpoints excluded) on {machine}, mean over seeds."
             + (f" Overrides for every row: `{' '.join(overrides)}`." if overrides else ""), "",
             "| model | " + " | ".join(f"seed {s} acc" for s in seeds) +
             " | mean acc | mean macro-F1 | params | train min | best epoch / epochs run |",
             "| --- |" + " --- |" * (len(seeds) + 5)]
    for t in table:
        accs = " | ".join(f"{t['acc'][s]:.2%}" if s in t["acc"] else "-" for s in seeds)
        lines.append(f"| {t['row']} | {accs} | {t['mean_acc']:.2%} | {t['mean_f1']:.4f} | "
                     f"{t['params']:,} | {t['mean_minutes']:.1f} | {t['epochs']} |")
    lines += ["", *reading(table, seeds, epochs), "", "Commands (run from the repository root):", "", "```"]
    lines += [r["command"] for r in rows]
    lines += ["```", "", "Budget:", "", "```toml", config.strip(), "```", ""]
    return "\n".join(lines)


def reading(table: list[dict], seeds: list[int], epochs: int | None = 5) -> list[str]:
    """What the numbers say, computed from them (so it cannot drift from the table)."""
    complete = [t for t in table if all(s in t["acc"] for s in seeds)]
    out = []
    if complete:
        best = max(complete, key=lambda t: t["mean_acc"])
        out.append(f"Best mean over all {len(seeds)} seed(s): {best['row']} ({best['mean_acc']:.2%}).")
    if epochs is not None and epochs < 40:
        out.append(f"A {epochs}-epoch budget favours models that fit fast; it does not show whether "
                   "augmentation and separable convolutions pay off over long runs (the full recipe of "
                   "`configs/paper.toml`, 40 epochs at these same widths, reaches 66.23% on PrivateTest, "
                   "and 68.49% at twice the width, `configs/paper-wide.toml`; no ablated model was "
                   "trained that long).")
    if len(seeds) > 1 and len(complete) >= 3:
        gaps = [max(t["acc"].values()) - min(t["acc"].values()) for t in complete]
        out.append(f"Seed-to-seed spread (max - min over {len(seeds)} seeds, {len(complete)} rows): "
                   f"mean {100 * sum(gaps) / len(gaps):.2f} points, largest {100 * max(gaps):.2f} "
                   "points; differences between rows smaller than that are noise.")
    else:
        out.append("Too few rows have every seed to measure seed-to-seed variation: small "
                   "differences between rows may be noise.")
    return out


if __name__ == "__main__":
    main()
