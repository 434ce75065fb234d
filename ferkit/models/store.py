"""Where models are kept, and the one resolver of model references (no PyTorch here).

A model reference is what a user passes as ``--model``, ``Recognizer(model=...)``, ``init_from``
or ``teachers``; :func:`resolve` turns it into a :class:`ModelRef`, and every other part of
ferkit asks it. A reference is one of:

- a shipped name (:func:`list_models`): ``ferkit/weights/<name>.onnx``, the graph the runtime
  runs, made by ``ferkit export --shipped`` from ``<name>.safetensors``, the weights training
  reads, with the card ``<name>.json`` (architecture, metrics, the command that made it);
- a weights file, ``.safetensors`` with its ``.json`` card beside it (the suffix may be left out);
- a run folder (``ferkit train --out``): its ``model.safetensors``;
- an ONNX graph, ``.onnx`` (from ``ferkit export``), its card in the graph's metadata;
- a pinned weights file, ``<name>@<sha256 prefix>`` (at least 8 hex digits): the shipped
  ``<name>`` if its weights have that SHA-256, else a copy in :func:`pins_dir` that
  ``ferkit model pin`` takes from the git history of ``ferkit/weights/<name>.safetensors``.

A shipped name moves when a better model ships under it; a recipe's ``init_from`` and
``teachers`` pin the weights they were run with, so that it still starts from those.
Nothing is downloaded: names resolve to files inside the package or the pins folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferkit.errors import FerkitError

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_MODEL = "default"  # the model used when none is named
GRAPH_SUFFIX, WEIGHTS_SUFFIX, CARD_SUFFIX = ".onnx", ".safetensors", ".json"
INT8_SUFFIX = ".int8.onnx"  # a shipped model's int8 graph beside its float one
RUN_MODEL = "model.safetensors"  # a run folder's final weights


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: its name in results, and the files that hold it (either may be None)."""

    name: str
    weights: Path | None = None  # .safetensors with its .json card: PyTorch, training, export
    graph: Path | None = None  # .onnx: onnxruntime
    shipped: bool = False
    int8_graph: Path | None = None  # .int8.onnx: a shipped model's int8 graph (backend "onnx-int8")

    def require_weights(self, purpose: str) -> Path:
        """The weights file, or a one-line error saying that ``purpose`` needs one."""
        if self.weights is None:
            raise FerkitError(f"{self.name} is an ONNX graph; {purpose} needs weights (a shipped model "
                              "name, a .safetensors file or a run folder)")
        return self.weights


def list_models() -> list[str]:
    """Names of the shipped models: a card with a graph or weights beside it."""
    return sorted(card.stem for card in WEIGHTS_DIR.glob(f"*{CARD_SUFFIX}")
                  if card.with_suffix(GRAPH_SUFFIX).is_file() or card.with_suffix(WEIGHTS_SUFFIX).is_file())


def is_graph_file(reference: str | os.PathLike) -> bool:
    return str(reference).lower().endswith(GRAPH_SUFFIX)


def resolve(reference: str | os.PathLike | None = None) -> ModelRef:
    """A model reference (None: :data:`DEFAULT_MODEL`) -> its files; a clear error if it names none."""
    text = str(reference or DEFAULT_MODEL)
    pin = parse_pin(text)
    if pin is not None:
        return _resolve_pin(*pin)
    if text in list_models():
        weights, graph, int8 = (WEIGHTS_DIR / f"{text}{suffix}"
                                for suffix in (WEIGHTS_SUFFIX, GRAPH_SUFFIX, INT8_SUFFIX))
        return ModelRef(text, weights if weights.is_file() else None, graph if graph.is_file() else None,
                        shipped=True, int8_graph=int8 if int8.is_file() else None)
    path = Path(text)
    if is_graph_file(text):
        if not path.is_file():
            raise FerkitError(f"{text}: no such ONNX file")
        return ModelRef(path.name, graph=path)
    if path.is_dir():
        path = path / RUN_MODEL
    if path.suffix != WEIGHTS_SUFFIX:
        path = path.with_suffix(WEIGHTS_SUFFIX)
    if path.is_file():
        return ModelRef(str(path), weights=path)
    known = ", ".join(list_models()) or "none"
    raise FerkitError(f"unknown model {reference!r}: not a shipped model ({known}) nor a weights file, "
                      "run folder or .onnx graph")


# ---- pinned weights: <name>@<sha256 prefix>

PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)@(?P<sha>[0-9a-f]{8,64})$")
PINS_ENV = "FERKIT_PINS"  # the pins folder, instead of ~/.cache/ferkit/pins
WEIGHTS_IN_REPO = "ferkit/weights"  # where the shipped files live in the git repository


def pins_dir() -> Path:
    """Where pinned weights are kept: ``$FERKIT_PINS``, else ``$XDG_CACHE_HOME/ferkit/pins``
    (``~/.cache/ferkit/pins``); outside the package, so that an upgrade keeps them."""
    if os.environ.get(PINS_ENV):
        return Path(os.environ[PINS_ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "ferkit" / "pins"


def parse_pin(reference: str | os.PathLike) -> tuple[str, str] | None:
    """(name, sha256 prefix) of ``name@<hex>``, else None (a path or a plain name)."""
    found = PIN.match(str(reference))
    return (found["name"], found["sha"]) if found else None


def pin_of(name: str) -> str:
    """The pinned reference to a shipped model as it is now: ``name@<first 12 hex digits>``."""
    return f"{name}@{file_sha256(resolve(name).require_weights('a pin'))[:12]}"


def unpinned_shipped(reference: str) -> str | None:
    """For a bare shipped name, the pin that names today's weights (a recipe should write it);
    None for anything else."""
    return pin_of(reference) if reference in list_models() else None


def pin_command(reference: str) -> str:
    return f"ferkit model pin {reference}"


def _resolve_pin(name: str, prefix: str) -> ModelRef:
    """The shipped file if its content matches, else the one copy in the pins folder that does."""
    label = f"{name}@{prefix}"
    shipped = WEIGHTS_DIR / f"{name}{WEIGHTS_SUFFIX}"
    if shipped.is_file() and file_sha256(shipped).startswith(prefix):
        graph, int8 = (WEIGHTS_DIR / f"{name}{suffix}" for suffix in (GRAPH_SUFFIX, INT8_SUFFIX))
        return ModelRef(label, shipped, graph if graph.is_file() else None, shipped=True,
                        int8_graph=int8 if int8.is_file() else None)
    found = sorted(pins_dir().glob(f"{name}@{prefix}*{WEIGHTS_SUFFIX}"))
    if len(found) > 1:
        raise FerkitError(f"{label}: {len(found)} pinned files in {pins_dir()} start with {prefix}; give "
                          "more hex digits")
    if found:
        if not file_sha256(found[0]).startswith(prefix):
            raise FerkitError(f"{found[0]}: its content no longer has sha256 {prefix}... (corrupt); "
                              f"delete it and run `{pin_command(label)}`")
        return ModelRef(label, weights=found[0])
    now = f"the shipped {name} is {pin_of(name)}" if shipped.is_file() else f"no shipped {name}"
    raise FerkitError(f"{label}: pinned weights not found ({now}; none in {pins_dir()}); fetch them "
                      f"from git history with `{pin_command(label)}` in a git clone of ferkit")


def fetch_pin(reference: str, repo: str | Path | None = None) -> tuple[Path, str]:
    """Copy the version of ``ferkit/weights/<name>.safetensors`` (and its card) whose SHA-256
    starts with the pin's prefix from the git history of ``repo`` (default: the clone this
    package runs from) into :func:`pins_dir`; returns (weights path, commit). Already pinned or
    shipped: nothing to copy (commit "")."""
    pin = parse_pin(reference)
    if pin is None:
        raise FerkitError(f"{reference!r} is not a pin: write NAME@SHA256PREFIX (at least 8 hex digits), "
                          "e.g. default@a3c3f3fe")
    name, prefix = pin
    try:
        return resolve(reference).require_weights("a pin"), ""
    except FerkitError:
        pass
    where = Path(repo) if repo is not None else WEIGHTS_DIR.parents[1]
    top = _git(where, "rev-parse", "--show-toplevel")
    if top is None:
        raise FerkitError(f"`ferkit model pin` reads the weights' git history, and {where} is not in a git "
                          "clone of ferkit (an installed package has no history): clone the repository "
                          "and run it there, or give --repo CLONE")
    path = f"{WEIGHTS_IN_REPO}/{name}{WEIGHTS_SUFFIX}"
    log = _git(where, "log", "--format=%H", "--", path)
    commits = log.decode().split() if log else []
    for commit in commits:
        blob = _git(where, "show", f"{commit}:{path}")
        card = _git(where, "show", f"{commit}:{WEIGHTS_IN_REPO}/{name}{CARD_SUFFIX}")
        if blob is None or card is None:
            continue  # the commit deleted the file
        digest = hashlib.sha256(blob).hexdigest()
        if digest.startswith(prefix):
            target = pins_dir() / f"{name}@{digest}{WEIGHTS_SUFFIX}"
            for dest, data in ((target.with_suffix(CARD_SUFFIX), card), (target, blob)):  # card first
                atomic_write(dest, lambda tmp, data=data: Path(tmp).write_bytes(data))
            return target, commit
    shallow = (_git(where, "rev-parse", "--is-shallow-repository") or b"").strip() == b"true"
    hint = "; this clone is shallow: `git fetch --unshallow` first" if shallow else ""
    raise FerkitError(f"{name}@{prefix}: no version of {path} in the {len(commits)} commit(s) of "
                      f"{top.decode().strip()}'s history that touch it has that sha256{hint}")


def _git(where: Path, *args: str) -> bytes | None:
    """git's output, or None when git fails (no repository, no such file at that commit, no git)."""
    try:
        done = subprocess.run(["git", "-C", str(where), *args], capture_output=True, check=False)
    except OSError:
        return None
    return done.stdout if done.returncode == 0 else None


def read_card(weights: str | Path) -> dict[str, Any]:
    """The JSON card beside a weights (or graph) file; it must name the architecture."""
    card_path = Path(weights).with_suffix(CARD_SUFFIX)
    if not card_path.is_file():
        raise FerkitError(f"{card_path}: model card missing (expected beside the weights)")
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise FerkitError(f"{card_path}: invalid JSON: {exc}") from None
    if "arch" not in card:
        raise FerkitError(f"{card_path}: card has no 'arch'")
    return card


def model_info(name: str) -> dict[str, Any]:
    """A shipped model as ``ferkit model list`` and ``/v1/models`` show it: its architecture and
    description, and its headline (what it is for, its figures) read from its card by
    :func:`ferkit.models.card.headline`, the one reader of those figures."""
    from ferkit.models.card import headline

    card = read_card(WEIGHTS_DIR / f"{resolve(name).name}{CARD_SUFFIX}")
    head = headline(card, name)
    return {"name": name, "arch": card["arch"], "description": card.get("description", ""),
            **head.as_dict(), "shown": head.cells()}


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_calibration(reference: str | os.PathLike | None, calibration: dict[str, Any]) -> Path:
    """Store ``calibration`` (temperature, "uncertain" threshold) in a model's JSON card, the
    source of truth every backend reads it from; returns the card's path."""
    ref = resolve(reference)
    if ref.weights is None:
        raise FerkitError(f"{ref.name}: an ONNX graph carries its card inside; calibrate the weights it "
                          "was exported from and export again")
    path = ref.weights.with_suffix(CARD_SUFFIX)
    card = read_card(ref.weights)
    card["calibration"] = calibration
    text = json.dumps(card, indent=2) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path


def atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """Write through a temporary file in the same folder, then rename: never a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        with open(tmp, "rb+") as f:  # on disk before the rename: a crash leaves the old or the new
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove the temporary files :func:`atomic_write` left in ``folder`` when its process was
    killed mid-write (``.NAME.XXXX.tmp``); returns them."""
    stale = [p for p in Path(folder).glob(".*.tmp") if p.is_file() and not p.is_symlink()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2) + "\n"))
