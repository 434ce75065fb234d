"""Every recipe in configs/ loads, and starts from the weights that made it: each ``init_from`` and
teacher is a pin (``name@sha256``) that resolves, from the package or from git history, or the run
folder of another recipe that the configs name; and their comments name files that exist.

Shipped names move (``default`` was a FER2013 model until 2026-12-02, a FER+ one since), so a
bare shipped name in a recipe would silently start the recipe from other weights.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO

from ferkit.errors import FerkitError
from ferkit.models.store import (
    WEIGHTS_DIR,
    fetch_pin,
    file_sha256,
    list_models,
    parse_pin,
    pin_of,
    resolve,
    unpinned_shipped,
)

pytest.importorskip("torch", reason="loading the weights a recipe starts from needs ferkit[train]")

from ferkit.models import create_model  # noqa: E402
from ferkit.models.io import load_model  # noqa: E402
from ferkit.train.config import load_config  # noqa: E402
from ferkit.train.loop import check_model_names, init_weights  # noqa: E402

CONFIGS = sorted((REPO / "configs").rglob("*.toml"))
PATH_IN_COMMENT = re.compile(
    r"\b((?:configs|results|benchmarks|ferkit|tests)/[\w./-]*\w\.(?:toml|md|py|json|sh))")
BARE_TOML = re.compile(r"(?<![\w/.-])([\w-]+\.toml)\b")
OUT_FOLDER = re.compile(r"--out\s+(runs/[\w./-]+)")


def comments(path: Path) -> str:
    return "\n".join(line for line in path.read_text().splitlines() if line.lstrip().startswith("#"))


def run_folders_made_by_recipes() -> set[str]:
    """Every ``--out runs/...`` that a recipe's comments give as its command."""
    return {m.rstrip("/") for path in CONFIGS for m in OUT_FOLDER.findall(comments(path))}


@pytest.fixture(scope="module")
def pins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh pins folder: every pin a recipe names is fetched from git history, as a user would."""
    folder = tmp_path_factory.mktemp("pins")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FERKIT_PINS", str(folder))
        yield folder


def resolve_or_fetch(reference: str) -> Path:
    """The weights of a pin, fetched with ``ferkit model pin``'s function if not shipped."""
    try:
        return resolve(reference).require_weights("a test")
    except FerkitError:
        pass
    try:
        path, _ = fetch_pin(reference)
    except FerkitError as exc:
        if "shallow" in str(exc) or "not in a git clone" in str(exc):
            pytest.skip(f"git history needed for {reference}: {exc}")
        raise
    return path


def test_there_are_configs() -> None:
    assert len(CONFIGS) >= 10 and any(p.parent.name == "experiments" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_config_loads_and_its_models_resolve(path: Path, pins: Path) -> None:
    cfg = load_config(path)
    made = run_folders_made_by_recipes()
    references = [("init_from", cfg.init_from)] if cfg.init_from else []
    references += [("teachers", t) for t in cfg.teachers]
    for key, ref in references:
        assert ref not in list_models(), \
            f"{path.name}: {key} = {ref!r} moves with each release; pin it ({pin_of(ref)})"
        if parse_pin(ref) is None:  # another recipe's run folder: that recipe must be in configs/
            folder = ref.removesuffix("/model.safetensors").rstrip("/")
            assert folder in made, f"{path.name}: {key} = {ref!r} is not made by any recipe in configs/"
            continue
        weights = resolve_or_fetch(ref)
        assert file_sha256(weights).startswith(parse_pin(ref)[1])
        if key == "init_from":  # the same check as training's warm start: architecture and every tensor
            init_weights(create_model(cfg.arch, **cfg.model), cfg)
        else:
            load_model(ref)
    runs_here = all(parse_pin(r) or (REPO / r).exists() for _, r in references)
    if runs_here:
        assert check_model_names(cfg, resuming=False) == []  # and training would not warn


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_config_comments_name_files_that_exist(path: Path) -> None:
    text = comments(path)
    missing = [p for p in PATH_IN_COMMENT.findall(text) if not (REPO / p).exists()]
    names = {p.name for p in CONFIGS}
    missing += [n for n in BARE_TOML.findall(text) if n not in names and not (REPO / n).exists()]
    assert not missing, f"{path.name} mentions files that do not exist: {missing}"


# ---------------------------------------------------------------- pins


def test_a_pin_of_the_shipped_weights_resolves_to_the_package(pins: Path) -> None:
    ref = resolve(pin_of("paper"))
    assert ref.shipped and ref.weights == WEIGHTS_DIR / "paper.safetensors" and ref.name == pin_of("paper")


def test_a_pin_from_history_is_fetched_once_then_resolves(pins: Path) -> None:
    weights = resolve_or_fetch("default@a3c3f3fe")  # the FER2013 default of 2026-11-28
    assert weights.parent == pins and file_sha256(weights).startswith("a3c3f3fe")
    assert weights.with_suffix(".json").is_file()
    assert resolve("default@a3c3f3fe").weights == weights
    assert fetch_pin("default@a3c3f3fe") == (weights, "")  # already there: nothing to fetch
    _, card = load_model("default@a3c3f3fe")
    assert card["name"] == "default@a3c3f3fe" and card["model"]["widths"] == [64, 128, 256]


def test_a_missing_pin_says_how_to_fetch_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERKIT_PINS", str(tmp_path))
    with pytest.raises(FerkitError) as err:
        resolve("large@59b732a3")
    text = str(err.value)
    assert "\n" not in text and "`ferkit model pin large@59b732a3`" in text and pin_of("large") in text


def test_a_corrupt_pinned_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERKIT_PINS", str(tmp_path))
    (tmp_path / "large@59b732a3ffff.safetensors").write_bytes(b"not the weights")
    with pytest.raises(FerkitError, match="corrupt"):
        resolve("large@59b732a3")


def test_pin_outside_a_git_clone_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERKIT_PINS", str(tmp_path / "pins"))
    with pytest.raises(FerkitError, match="not in a git clone of ferkit"):
        fetch_pin("large@59b732a3", repo=tmp_path)


def test_a_pin_that_history_lacks_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERKIT_PINS", str(tmp_path))
    shallow = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--is-shallow-repository"],
                             capture_output=True, text=True)
    if shallow.returncode or shallow.stdout.strip() != "false":
        pytest.skip(f"{REPO} is not a git clone with its whole history")
    with pytest.raises(FerkitError, match="no version of ferkit/weights/large.safetensors"):
        fetch_pin("large@00000000")


def test_training_warns_of_a_bare_shipped_name_with_the_pin_to_write() -> None:
    cfg = load_config(None, ["init_from=paper", "teachers=[\"paper-wide\"]"])
    warnings = check_model_names(cfg, resuming=False)
    assert len(warnings) == 2 and pin_of("paper") in warnings[0] and pin_of("paper-wide") in warnings[1]
    assert unpinned_shipped(pin_of("paper")) is None
    pinned = load_config(None, [f"init_from={pin_of('paper')}"])
    assert check_model_names(pinned, resuming=False) == []
