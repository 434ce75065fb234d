"""Command-line interface: argument parsing only; each command calls one function elsewhere."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Callable

from ferkit.errors import FerkitError


def _cmd_train(args: argparse.Namespace) -> int:
    from ferkit.config import load_config
    from ferkit.train import fit

    cfg = load_config(args.config, args.overrides)
    command = "ferkit " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    fit(cfg, args.data, args.out, resume=args.resume, command=command)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferkit", description="Facial expression recognition toolkit.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model (runs unchanged under torchrun)")
    p.add_argument("--config", help="TOML recipe, e.g. configs/paper.toml")
    p.add_argument("--data", required=True, help="FER2013 CSV(.gz), image folders or .tar.gz")
    p.add_argument("--out", required=True, help="run folder for checkpoints, history and weights")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    p.add_argument("overrides", nargs="*", help="config overrides such as epochs=5 model.dropout=0.2")
    p.set_defaults(func=_cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except FerkitError as exc:
        print(f"ferkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ferkit: interrupted", file=sys.stderr)
        return 130
