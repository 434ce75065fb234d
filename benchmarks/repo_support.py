"""What every benchmark script shares besides timing: the repository's ``tests/`` folder on the
import path (so that a benchmark can use ``support``: a real ``ferkit serve``, media made from one
real photo, malformed requests, the same helpers the tests use, which the installed package does
not ship), and the smoke mode that keeps every script runnable.

Import it before ``support``: ``import repo_support  # noqa: F401``.

Smoke mode (``--smoke``): tiny sizes, seconds of work, the same code path as a full run. Its
results go to ``--results-dir`` (default: a fresh temporary folder), never to
``benchmarks/results``, whose committed files only full runs write. ``tests/test_benchmarks.py``
runs every script this way in CI, so a benchmark that stops working fails a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
RESULTS = REPO / "benchmarks" / "results"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


def add_smoke_args(parser: argparse.ArgumentParser) -> None:
    """``--smoke`` and ``--results-dir``, the same in every script."""
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, seconds: checks that the benchmark runs; its results go "
                             "to --results-dir or a temporary folder, never to benchmarks/results")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help="where to write the results (default: benchmarks/results; with "
                             "--smoke, a temporary folder)")


def results_dir(args: argparse.Namespace) -> Path:
    """The folder this run writes its results into (created)."""
    if args.results_dir is not None:
        folder = Path(args.results_dir)
    elif args.smoke:
        folder = Path(tempfile.mkdtemp(prefix="ferkit-bench-smoke-"))
    else:
        folder = RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_text(path: Path, text: str) -> None:
    """``path.write_text(text)``, atomically (a temporary file, then a rename)."""
    from ferkit.models.store import atomic_write

    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))


def save_figure(fig, path: Path, **savefig) -> None:  # fig: a matplotlib Figure
    """``fig.savefig(path)``, atomically; the format from ``path``'s suffix."""
    from ferkit.models.store import atomic_write

    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", **savefig))


def write_results(folder: Path, stem: str, result: dict | list, markdown: str | None) -> None:
    """Write ``<stem>.json`` (``indent=2`` and a newline) and, if given, ``<stem>.md``, then print
    the Markdown. Atomic (a temporary file, then a rename): a killed run leaves the old results or
    the new ones, never a half file, as every write in this project."""
    write_text(folder / f"{stem}.json", json.dumps(result, indent=2) + "\n")
    if markdown is not None:
        write_text(folder / f"{stem}.md", markdown)
        print(markdown)
