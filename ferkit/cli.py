"""Command-line interface: argument parsing only; each command calls one function elsewhere."""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from ferkit.cpu import keep_freed_memory
from ferkit.errors import OPTIONAL, FerkitError, missing_extra, require
from ferkit.runtime import BACKENDS

TRAIN_MODULES = ("torch", "safetensors")  # the train extra's core


def _cmd_train(args: argparse.Namespace) -> int:
    require("ferkit train", *TRAIN_MODULES)
    from ferkit.train.config import load_config
    from ferkit.train.loop import fit

    cfg = load_config(args.config, args.overrides)
    command = "ferkit " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    fit(cfg, args.data, args.out, resume=args.resume, command=command)
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (runs unchanged under torchrun)")
    p.add_argument("--config", help="TOML recipe, e.g. configs/paper.toml")
    p.add_argument("--data", required=True, help="FER2013 CSV(.gz), image folders or .tar.gz")
    p.add_argument("--out", required=True, help="run folder for checkpoints, history and weights")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    p.add_argument("--list-keys", action=_ListKeys,
                   help="print every config key with its default and what it does, then exit")
    p.add_argument("overrides", nargs="*", help="config overrides such as epochs=5 model.dropout=0.2")
    p.set_defaults(func=_cmd_train)


class _ListKeys(argparse.Action):
    """``train --list-keys``: prints the config keys and exits, as --help does (no --data needed)."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # type: ignore[no-untyped-def]
        try:
            require("ferkit train --list-keys", *TRAIN_MODULES)
            from ferkit.train.config import format_keys

            text = format_keys()
        except FerkitError as exc:
            parser.exit(2, f"ferkit: error: {exc}\n")
        try:
            print(text, flush=True)
        except BrokenPipeError:  # `ferkit train --list-keys | head`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        parser.exit()


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from ferkit.data.labelled_photos import is_labelled_photos
    from ferkit.evaluate.crops import evaluate_model
    from ferkit.evaluate.metrics import format_metrics

    check_output("--figures", args.figures, folder=True)
    if is_labelled_photos(args.data):
        return _eval_labelled_photos(args)
    if args.detector or args.quiet:
        raise FerkitError("--detector and --quiet apply to labelled photos only "
                          "(a folder with labels.csv and images/)")
    m = evaluate_model(args.model, args.data, args.split, args.protocol, args.split_seed, args.tta,
                       args.exclude_train_duplicates, args.ferplus, args.backend,
                       calibrated=not args.uncalibrated, prior=args.prior,
                       calibration="crops" if args.calibration == "auto" else args.calibration)
    scored = {"fer2013": m} | ({"ferplus": m["ferplus"]} if "ferplus" in m else {})
    write_confusion_figures(args.figures, scored, f"{m['model']} on {m['split']}")
    if args.json:
        print(json.dumps(m))
    else:
        print(f"model {m['model']} on {m['data']} ({m['split']} split{', TTA' if m['tta'] else ''})")
        print("FER2013's own labels:")
        print(format_metrics(m))
        if "ferplus" in m:
            left = ", ".join(f"{v} {k}" for k, v in m["ferplus"]["left_out"].items())
            print(f"\nFER+ majority labels ({m['ferplus']['votes']}; left out: {left}):")
            print(format_metrics(m["ferplus"]))
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="accuracy, per-class P/R/F1, macro-F1 and confusion matrix")
    _add_model_option(p)
    p.add_argument("--data", required=True, help="FER2013 CSV(.gz), image folders, .tar.gz or class folders")
    p.add_argument("--split", choices=["test", "val", "train"], default="test",
                   help="split to score: test (PrivateTest), val (PublicTest) or train")
    p.add_argument("--protocol", choices=["canonical", "paper"], default="canonical",
                   help="canonical: the challenge's Usage column (Training/PublicTest/PrivateTest); "
                        "paper: a random 80/10/10 split of all images")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the paper protocol's random split")
    p.add_argument("--tta", action="store_true", help="average with the horizontally flipped image")
    p.add_argument("--exclude-train-duplicates", action="store_true",
                   help="drop test images that are exact pixel copies of Training images")
    p.add_argument("--ferplus", metavar="VOTES",
                   help="FER+ votes file for the second score (default: ../ferplus/ferplus_votes.csv.gz "
                        "beside the data folder; '' skips it)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--figures", metavar="DIR",
                   help="write a confusion-matrix figure per label set (confusion_*.png) into DIR")
    p.add_argument("--uncalibrated", action="store_true",
                   help="score the network's own probabilities, without the model card's temperature")
    p.add_argument("--calibration", choices=["auto", "crops", "photos"], default="auto",
                   help="which of the card's temperatures applies: crops (FER2013-like faces), photos "
                        "(faces found in photos), auto (photos for labelled photos, else crops)")
    _add_backend_option(p)
    # labelled photos (a folder with labels.csv and images/): see _eval_labelled_photos
    p.add_argument("--detector", help="labelled photos: face detector (default: the Recognizer's)")
    p.add_argument("--quiet", action="store_true", help="labelled photos: no progress bar")
    p.set_defaults(func=_cmd_eval)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    import json

    from ferkit.evaluate.crops import calibrate_model
    from ferkit.models.store import write_calibration

    require("ferkit calibrate (the photo degradations)", "torch")
    from ferkit.train.augment import photo_degraded

    if args.write and args.backend == "onnx-int8":
        raise FerkitError("--write stores the float graph's calibration, which the int8 graph shares: "
                          "calibrate with --backend onnx or torch")
    report = calibrate_model(args.model, args.data, args.ferplus, args.backend, photo_degraded)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"model {report['model']}: temperature {report['temperature']:.4f}, uncertain below "
              f"{report['uncertain_below']:.2f} (fitted on {report['fitted_on']})")
        print(f"{'split / labels':24s} {'ECE before':>10s} {'after (sd)':>16s} {'any T':<13s} "
              f"{'NLL before':>10s} {'after':>7s}  uncertain: share, accuracy flagged / rest")
        for key, value in report.items():
            if "/" in key:
                b, a, h = value["before"], value["after"], value["lowest_ece_any_temperature"]
                u = a["uncertain"]
                print(f"{key:24s} {b['ece']:10.4f} {a['ece']:7.4f} ({a['ece_sd']:.4f}) "
                      f"{h['ece']:6.4f}@{h['temperature']:<6.3g} "
                      f"{b['nll']:10.4f} {a['nll']:7.4f}  {u['share']:.1%}, {u['accuracy_flagged']} / "
                      f"{u['accuracy_rest']}")
        print("sd: the ECE's bootstrap standard deviation (sampling noise); any T: the lowest ECE that any "
              "single temperature reaches on that set, chosen with hindsight (a diagnostic, not a fit)")
        _print_photo_calibration(report["photos"])
    if args.write:
        keep = ("temperature", "uncertain_below", "fitted_on")
        calibration = {k: report[k] for k in keep} | {"photos": {k: report["photos"][k] for k in keep}}
        path = write_calibration(args.model, calibration)
        print(f"wrote the calibration into {path}", file=sys.stderr)
    return 0


def _print_photo_calibration(photos: dict) -> None:
    print(f"faces from photos: temperature {photos['temperature']:.4f}, uncertain below "
          f"{photos['uncertain_below']:.2f} (fitted on {photos['fitted_on']})")
    for key, value in photos.items():
        if "/" in key:
            one, majority = value["one labeller"], value["majority"]["after"]
            u = one["after"]["uncertain"]
            print(f"{key:24s} ECE vs one labeller {one['before']['ece']:.4f} -> {one['after']['ece']:.4f} "
                  f"({one['after']['ece_sd']:.4f}), vs the majority {majority['ece']:.4f}; uncertain: "
                  f"{u['share']:.1%}, agreement flagged / rest {u['accuracy_flagged']} / "
                  f"{u['accuracy_rest']}")


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="fit the temperatures and 'uncertain' thresholds (FER2013 crops, "
                                        "faces from photos) on FER+ PublicTest")
    _add_model_option(p, prior=False)
    p.add_argument("--data", required=True,
                   help="the FER2013 challenge CSV(.gz) (PublicTest and PrivateTest)")
    p.add_argument("--ferplus", metavar="VOTES",
                   help="FER+ votes file (default: ../ferplus/ferplus_votes.csv.gz beside the data folder)")
    p.add_argument("--write", action="store_true",
                   help="store the result in the model card (a weights file's .json, a run folder's "
                        "model.json)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_backend_option(p)
    p.set_defaults(func=_cmd_calibrate)


# ---- `ferkit eval --data FOLDER` with labels.csv: labelled photos (ferkit/evaluate/photos.py)

def _eval_labelled_photos(args: argparse.Namespace) -> int:
    import json

    from ferkit.evaluate.photos import evaluate_labelled_photos, format_photo_metrics

    unused = [flag for flag, used in [("--split", args.split != "test"),
                                      ("--protocol", args.protocol != "canonical"),
                                      ("--split-seed", args.split_seed != 0),
                                      ("--exclude-train-duplicates", args.exclude_train_duplicates),
                                      ("--ferplus", getattr(args, "ferplus", None) is not None)]
              if used]
    if unused:
        raise FerkitError(f"{', '.join(unused)}: not for labelled photos ({args.data} has labels.csv "
                          "and no splits; every labelled face is scored)")
    m = evaluate_labelled_photos(args.model, args.data, detector=args.detector, backend=args.backend,
                                 tta=args.tta, progress=not args.quiet, calibrated=not args.uncalibrated,
                                 prior=args.prior, calibration=args.calibration)
    print(json.dumps(m) if args.json else format_photo_metrics(m))
    write_confusion_figures(args.figures, {"classifier": m["classifier"], "end_to_end": m["end_to_end"]},
                            f"{m['model']} on {Path(args.data).name}")
    return 0


def write_confusion_figures(folder: str | None, scored: dict[str, dict], title: str) -> None:
    """``confusion_<name>.png`` in ``folder`` (created) for each set of metrics; nothing without
    ``--figures``."""
    if not folder:
        return
    from ferkit.figures import confusion_matrix

    Path(folder).mkdir(exist_ok=True)
    for name, metrics in scored.items():
        path = confusion_matrix(metrics["confusion_matrix"], Path(folder) / f"confusion_{name}.png",
                                f"{title}: {name.replace('_', ' ')}")
        print(f"wrote {path}", file=sys.stderr)


def _cmd_report(args: argparse.Namespace) -> int:
    require("ferkit report", *TRAIN_MODULES, "matplotlib")
    from ferkit.train.report import build_report

    print(f"report written to {build_report(args.run_dir, args.data, score_test=args.score_test)}")
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="Markdown report with Figs. 7-10 and Table 1 for a run folder")
    p.add_argument("run_dir", help="run folder written by `ferkit train --out`")
    p.add_argument("--data", help="data path, if it moved since training")
    p.add_argument("--score-test", action="store_true",
                   help="score the test split even though the run was trained with test_at_end=false")
    p.set_defaults(func=_cmd_report)


def _cmd_data_summary(args: argparse.Namespace) -> int:
    from ferkit.data.summary import summarize

    print(summarize(args.data, args.out))
    return 0


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect a data set")
    dsub = p.add_subparsers(dest="data_command")
    p.set_defaults(func=_needs_subcommand("ferkit data", dsub))
    s = dsub.add_parser("summary", help="counts per split and class; Figs. 1-3 with --out")
    s.add_argument("--data", required=True, help="FER2013 CSV(.gz), image folders or .tar.gz")
    s.add_argument("--out", help="folder for the figures")
    s.set_defaults(func=_cmd_data_summary)


def _needs_subcommand(name: str, sub: argparse._SubParsersAction) -> Callable[[argparse.Namespace], int]:
    """The command of a group called without a subcommand: one line naming the subcommands."""
    def missing(args: argparse.Namespace) -> int:
        choices = ", ".join(sub.choices)
        raise FerkitError(f"{name} needs a subcommand: {choices} (see {name} --help)")
    return missing


def _cmd_model_summary(args: argparse.Namespace) -> int:
    require("ferkit model summary", *TRAIN_MODULES)
    from ferkit.models.io import load_model
    from ferkit.models.summary import format_summary

    model, card = load_model(args.name)
    print(format_summary(model, f"model {card['name']} (architecture {card['arch']})"))
    return 0


def _add_model(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="inspect models")
    msub = p.add_subparsers(dest="model_command")
    p.set_defaults(func=_needs_subcommand("ferkit model", msub))
    s = msub.add_parser("summary", help="per-layer parameters and Eq. 1 for separable convolutions")
    s.add_argument("name", nargs="?", default="default",
                   help="shipped model name, weights file or run folder")
    s.set_defaults(func=_cmd_model_summary)
    ls = msub.add_parser("list", help="shipped models: what each is for, accuracy and speed")
    ls.set_defaults(func=_cmd_model_list)
    pin = msub.add_parser("pin", help="fetch pinned weights (NAME@SHA256PREFIX, as recipes name them) "
                                      "from the git history of ferkit/weights into the pins folder")
    pin.add_argument("reference", help="e.g. default@a3c3f3fe: the weights once shipped as `default` whose "
                                       "SHA-256 starts with a3c3f3fe")
    pin.add_argument("--repo", help="a git clone of ferkit with its history (default: the clone ferkit runs "
                                    "from)")
    pin.set_defaults(func=_cmd_model_pin)


def _cmd_model_pin(args: argparse.Namespace) -> int:
    from ferkit.models.store import fetch_pin

    path, commit = fetch_pin(args.reference, args.repo)
    print(f"{args.reference}: {path}" + (f" (from commit {commit[:12]})" if commit else " (already here)"))
    return 0


def _cmd_model_list(args: argparse.Namespace) -> int:
    from ferkit.models.card import headline
    from ferkit.models.store import CARD_SUFFIX, WEIGHTS_DIR, list_models, read_card

    rows = [headline(read_card(WEIGHTS_DIR / f"{name}{CARD_SUFFIX}"), name) for name in list_models()]
    header = ("model", "labels", "params", "FER+ PrivateTest", "ExpW-dev end to end", "FER2013 PrivateTest",
              "crops/s")
    table = [header] + [(h.name, h.labels, *(h.cells()[k] for k in ("params", "ferplus", "expw", "fer2013",
                                                                      "speed"))) for h in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row, h in zip(table, [None, *rows], strict=True):
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths,
                                                                                           strict=True))))
        if h is not None:
            print(f"  {h.purpose}")
    priors = sorted({h.prior for h in rows if h.prior})
    speeds = sorted({h.speed_on for h in rows if h.speed_on})
    print(f"\naccuracy / macro-F1 under the {' or '.join(priors) or '–'} prior (what --prior auto gives); "
          "FER+: majority labels; ExpW-dev: web photos, a missed face counts as wrong; FER2013: its own "
          f"labels. crops/s: {'; '.join(speeds) or '–'}. From each model's card (ferkit/weights/NAME.json, "
          "'figures'); – where a card has no figure.")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from ferkit.serve.server import run_server

    hosts = [h.strip() for h in args.allowed_hosts.split(",") if h.strip()] if args.allowed_hosts else None
    run_server(host=args.host, port=args.port, model=args.model, prior=args.prior, workers=args.workers,
               max_upload_mb=args.max_upload_mb, detector=args.detector, api_key=args.api_key,
               allowed_hosts=hosts, max_connections=args.max_connections,
               header_timeout=args.header_timeout, body_timeout=args.body_timeout)
    return 0


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="REST API and web page (FastAPI under uvicorn)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    _add_model_option(p)
    p.add_argument("--workers", type=int, default=1, help="processes, each with its own model")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest accepted image upload")
    _add_detector_option(p)
    p.add_argument("--api-key", default=None,
                   help="require this key on /v1/... (X-API-Key or Authorization: Bearer); default: "
                        "the FERKIT_API_KEY environment variable, which keeps it out of `ps`")
    p.add_argument("--allowed-hosts", default=None,
                   help="comma-separated Host header names to answer (*.example.org allowed; '*': any); "
                        "default: loopback names when bound to loopback, else any")
    p.add_argument("--max-connections", type=int, default=2048,
                   help="open connections per worker; past it requests get 503")
    p.add_argument("--header-timeout", type=float, default=10.0,
                   help="seconds a client has to send a request's headers (else 408, closed)")
    p.add_argument("--body-timeout", type=float, default=60.0,
                   help="seconds a client has to send a request's body after its headers")
    p.set_defaults(func=_cmd_serve)


def _add_detector_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detector", choices=["yunet", "haar"], default="yunet",
                   help="face detector: YuNet (default; five landmarks, eye-levelled crops) or OpenCV 4's "
                        "Haar cascade (needs OpenCV 4: pip install 'ferkit[opencv]')")


def _add_model_option(p: argparse.ArgumentParser, prior: bool = True) -> None:
    p.add_argument("--model", default="default",
                   help="shipped model name (`ferkit model list`), .safetensors file, run folder or .onnx "
                        "graph from `ferkit export`")
    if prior:
        p.add_argument("--prior", default="auto", metavar="PRIOR",
                       help="how common each expression is taken to be: balanced (all equal; the "
                            "default, 'auto', where the model card records its training prior), natural "
                            "(the training data's frequencies: everyday footage) or shares such as "
                            "happy=0.4,neutral=0.4")


def check_output(option: str, path: str | None, *, folder: bool = False) -> None:
    """The one rule for output paths, checked before any work starts: ferkit creates or replaces
    the output itself (a file, or with ``folder`` the folder it fills), never the folder that holds
    it, which must exist. A one-line error otherwise."""
    if path is None:
        return
    target = Path(path)
    if folder and target.exists() and not target.is_dir():
        raise FerkitError(f"{option} {path}: exists and is not a folder")
    if not folder and target.is_dir():
        raise FerkitError(f"{option} {path}: is a folder; give a file name")
    parent = target.parent
    if not parent.is_dir():
        raise FerkitError(f"{option} {path}: folder {parent} does not exist (ferkit creates output "
                          "files and folders, not the folders they go in)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise FerkitError(f"{option} {path}: cannot write in {parent}")


def _add_backend_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=list(BACKENDS), default="onnx",
                   help="onnxruntime (default), onnxruntime on the shipped model's int8 graph (1.24x "
                        "the crops/s of `default` on an AVX2 CPU; 2%% of its labels differ: "
                        "docs/speed.md#int8) or PyTorch (needs ferkit[train])")


def _cmd_predict(args: argparse.Namespace) -> int:
    from ferkit.inference.files import predict_paths
    from ferkit.inference.recognizer import Recognizer

    check_output("--annotate", args.annotate, folder=True)
    detector = None if args.no_detect else args.detector
    recognizer = Recognizer(args.model, detector=detector, backend=args.backend, prior=args.prior)
    return predict_paths(args.paths, recognizer, fmt=args.format, annotate_dir=args.annotate,
                         detect=not args.no_detect, explain=args.explain)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="emotions of the faces in image files, folders or globs")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders (recursive) or globs")
    _add_model_option(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="format", action="store_const", const="json",
                     help="JSON Lines: one object per image (the web service's response shape)")
    fmt.add_argument("--csv", dest="format", action="store_const", const="csv", help="one CSV row per face")
    p.set_defaults(format="table")
    p.add_argument("--annotate", metavar="OUTDIR", help="save copies with boxes, labels and bars here")
    p.add_argument("--no-detect", action="store_true", help="inputs are already-cropped faces")
    p.add_argument("--explain", action="store_true",
                   help="what each label relied on (occlusion maps): drawn on --annotate copies, in --json")
    _add_detector_option(p)
    _add_backend_option(p)
    p.set_defaults(func=_cmd_predict)


def _cmd_explain(args: argparse.Namespace) -> int:
    from ferkit.inference.files import explain_paths
    from ferkit.inference.recognizer import Recognizer

    check_output("--out", args.out, folder=True)
    detector = None if args.no_detect else args.detector
    recognizer = Recognizer(args.model, detector=detector, backend=args.backend, prior=args.prior)
    return explain_paths(args.paths, recognizer, args.out, detect=not args.no_detect)


def _add_explain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="what each face's label relied on: crop, heat map and overlay PNGs")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders (recursive) or globs")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG files")
    _add_model_option(p)
    p.add_argument("--no-detect", action="store_true", help="inputs are already-cropped faces")
    _add_detector_option(p)
    _add_backend_option(p)
    p.set_defaults(func=_cmd_explain)


def _cmd_video(args: argparse.Namespace) -> int:
    from ferkit.inference.detect import make_detector
    from ferkit.inference.recognizer import Recognizer
    from ferkit.inference.video import DETECT_SIDE, analyse_video

    if (args.input is None) == (args.camera is None):
        raise FerkitError("give either a video file or --camera INDEX")
    for option, path in (("--out", args.out), ("--csv", args.csv), ("--plot", args.plot)):
        check_output(option, path)
    detector = make_detector(args.detector, max_side=DETECT_SIDE)
    recognizer = Recognizer(args.model, detector=detector, backend=args.backend, prior=args.prior)
    source = args.camera if args.camera is not None else args.input
    summary = analyse_video(source, recognizer, out=args.out, csv_path=args.csv, plot=args.plot,
                            every=args.every, progress=not args.quiet, detect_every=args.detect_every)
    print(summary.line(), file=sys.stderr)
    return 0


def _add_video(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("video", help="track faces and their emotions through a video or a camera")
    p.add_argument("input", nargs="?", metavar="IN",
                   help="video file (anything FFmpeg decodes; needs PyAV, the video extra)")
    p.add_argument("--camera", type=int, metavar="INDEX",
                   help="read camera INDEX instead (Ctrl-C stops; needs OpenCV, the opencv extra)")
    p.add_argument("--out", help="annotated video to write (.mp4)")
    p.add_argument("--csv", help="per-frame CSV: time, face id, box, 7 probabilities, landmarks")
    p.add_argument("--plot", help="emotion-over-time plot (.png)")
    p.add_argument("--every", type=int, default=1, metavar="N", help="analyse every Nth frame")
    p.add_argument("--detect-every", type=int, default=1, metavar="N",
                   help="run the full face detector on every Nth analysed frame only and find the tracked "
                        "faces again in small windows between (faster where faces are few; a face lost "
                        "in its window brings the full detector back at once, a new face waits up to N-1 "
                        "frames; default 1: detect on every frame)")
    _add_model_option(p)
    _add_backend_option(p)
    _add_detector_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_video)


def _cmd_export(args: argparse.Namespace) -> int:
    require("ferkit export", *TRAIN_MODULES, "onnx")
    from ferkit.runtime.export import export_model, export_shipped

    if args.shipped:
        if args.out or args.quantize or args.model != "default":
            raise FerkitError("--shipped writes every shipped model's graphs into the package: "
                              "no --model, --out or --quantize (--calibration DATA adds the int8 graphs)")
        paths = export_shipped(args.calibration)
    elif args.out is None:
        raise FerkitError("give --out FILE (or --shipped for the package's own graphs)")
    else:
        check_output("--out", args.out)
        paths = [export_model(args.model, args.format, args.out, quantize=args.quantize,
                              calibration=args.calibration)]
    for path in paths:
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model for other runtimes (ONNX, dynamic batch)")
    p.add_argument("--model", default="default", help="shipped model name, weights file or run folder")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="file format to write")
    p.add_argument("--out", help="file to write, e.g. paper.onnx")
    p.add_argument("--shipped", action="store_true",
                   help="(re)make the graphs inside the package (ferkit/weights/*.onnx) from its weights")
    p.add_argument("--quantize", choices=["int8"],
                   help="int8 weights and activations (static, per-channel), for onnxruntime")
    p.add_argument("--calibration", metavar="DATA",
                   help="with --quantize, or --shipped for the int8 graphs: data set whose training "
                        "faces set the activation ranges")
    p.set_defaults(func=_cmd_export)


def _cmd_batch(args: argparse.Namespace) -> int:
    require(f"ferkit batch {args.batch_command}", "ray", "pyarrow")
    from ferkit.batch.run import run_batch

    if args.batch_command == "video":
        options = {"detector": args.detector, "every": args.every, "frames_per_range": args.frames_per_range}
    else:
        options = {"detector": None if args.no_detect else args.detector, "detect": not args.no_detect}
    return run_batch(args.batch_command, args.paths, args.out, fmt=args.format, address=args.address,
                     workers=args.workers, cpus_per_worker=args.cpus_per_worker, progress=not args.quiet,
                     model=args.model, prior=args.prior, **options)


def _add_batch(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("batch", help="predict or video over many files on a Ray cluster (ferkit[ray])")
    bsub = p.add_subparsers(dest="batch_command")
    p.set_defaults(func=_needs_subcommand("ferkit batch", bsub))
    for name, what in (("predict", "photos: `ferkit predict --csv` rows"),
                       ("video", "videos split into frame ranges: `ferkit video --csv` rows with source")):
        s = bsub.add_parser(name, help=what)
        s.add_argument("paths", nargs="+", metavar="PATH", help="files, folders (recursive) or globs")
        s.add_argument("--out", required=True, metavar="DIR",
                       help="folder for the result files (created; earlier results in it are replaced)")
        s.add_argument("--format", choices=["parquet", "jsonl"], default="parquet", help="result file format")
        s.add_argument("--address", help="join this Ray cluster (HOST:PORT or auto); default: a local one")
        s.add_argument("--workers", type=int, help="actors, one model each (default: the cluster's CPUs)")
        s.add_argument("--cpus-per-worker", type=float, default=1, help="CPUs (and threads) per actor")
        _add_model_option(s)
        _add_detector_option(s)
        if name == "video":
            s.add_argument("--every", type=int, default=1, metavar="N", help="analyse every Nth frame")
            s.add_argument("--frames-per-range", type=int, default=600, metavar="N",
                           help="frames per unit of work: a long video spreads over the workers")
        else:
            s.add_argument("--no-detect", action="store_true", help="inputs are already-cropped faces")
        s.add_argument("--quiet", action="store_true", help="no progress")
        s.set_defaults(func=_cmd_batch)


# Each command group registers itself here; keep one _add_* function per command.
_COMMANDS = [_add_train, _add_eval, _add_report, _add_data, _add_model, _add_serve,
             _add_predict, _add_explain, _add_video, _add_export, _add_calibrate,
             _add_batch]


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default where it says something: not None, False or an empty list, and
    not where the help text already names it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or action.default is False or action.default == [] \
                or action.default == argparse.SUPPRESS or "default" in text:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Every (sub)command's parser: help with defaults."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """argparse's one-line error, with the choice a typo most likely meant."""
        found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if found:
            choices = [c.strip().strip("'") for c in found.group(2).split(",")]
            near = difflib.get_close_matches(found.group(1), choices, n=1)
            if near:
                message += f"; did you mean {near[0]!r}?"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    from ferkit import __version__

    parser = _Parser(prog="ferkit", description="Facial expression recognition toolkit.")
    parser.add_argument("--version", action="version", version=f"ferkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser


# Commands that run for a long time and must hand freed memory back (see keep_freed_memory).
LONG_RUNNING = frozenset({"serve"})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    if args.command not in LONG_RUNNING:
        keep_freed_memory()  # batch after batch of same-sized tensors: reuse, not page faults
    try:
        code = func(args)
        sys.stdout.flush()  # a closed pipe fails here, inside the handler below, not at exit
        return code
    except BrokenPipeError:
        # The reader went away (`ferkit predict --csv | head -1`): stop quietly, as `cat` does.
        # Python flushes stdout again at exit; point it at devnull so that cannot fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except FerkitError as exc:
        print(f"ferkit: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # an optional dependency that no require() caught first
        top = (exc.name or "").split(".")[0]
        if top not in OPTIONAL:
            raise
        print(f"ferkit: error: {missing_extra(f'ferkit {args.command}', [top])}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ferkit: interrupted", file=sys.stderr)
        return 130
