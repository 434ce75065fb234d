"""Every example in README.md and docs/*.md runs, or says why it does not.

Each fenced ``sh``/``bash``/``python`` block is either run here, as a user would run it from the
repository root, or preceded by ``<!-- not run: REASON -->`` on the line before it. A block runs in
a sandbox folder with the repository's ``.venv/bin`` first on PATH and a small ``../shared``
beside it: the real astronaut photo, a slice of the FER2013 CSV with its FER+ votes, a few ExpW-dev
photos and the YuNet graphs. ``configs/`` is linked in, and ``clip.mp4`` (a 2 s video of the
astronaut's face) and ``faces/`` (a few FER2013 faces as PNGs) are made here. Blocks share the
sandbox in file order, so a block may use what an earlier block of the same file wrote
(``ferkit report runs/quick`` after the training).

Every fenced block names its language (a block without one could hide a command), and every
relative link in those files points at a file that exists.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from conftest import shared_dir

from ferkit.data.slices import slice_fer

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]
RUN_LANGS = {"sh", "bash", "python"}

FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(\S.*?)\s*-->$")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")

# the sandbox's slice of FER2013: rows per Usage, the first of each
SLICE = {"Training": 256, "PublicTest": 64, "PrivateTest": 64}
EXPW_PHOTOS = 8
FACES = 6


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    code: str
    not_run: str | None
    expected: str | None = None  # a ```text block right after it: what it prints

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found: list[Block] = []
    ends: list[int] = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = [s.strip() for s in text[: match.start()].splitlines() if s.strip()]
        marker = NOT_RUN.match(before[-1]) if before else None
        found.append(Block(page, line, match.group(1).strip(), match.group(2),
                           marker.group(1) if marker else None))
        if (len(found) > 1 and found[-1].lang == "text" and found[-2].lang in RUN_LANGS
                and not text[ends[-1]:match.start()].strip()):
            found[-2] = replace(found[-2], expected=found[-1].code)
        ends.append(match.end())
    return found


ALL = [b for page in PAGES if page.is_file() for b in blocks(page)]
RUNNABLE = [b for b in ALL if b.lang in RUN_LANGS and b.not_run is None]


def test_every_block_names_its_language() -> None:
    bare = [b.name for b in ALL if not b.lang]
    assert not bare, f"fenced blocks without a language (write ```text for output): {bare}"


def test_every_not_run_note_stands_before_a_block_and_gives_a_reason() -> None:
    stray = []
    for page in PAGES:
        if not page.is_file():
            continue
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            if "<!-- not run" in line:
                rest = [s for s in lines[i + 1:] if s.strip()]
                if not NOT_RUN.match(line.strip()) or not rest or not rest[0].startswith("```"):
                    stray.append(f"{page.relative_to(REPO)}:{i + 1}")
    assert not stray, f"'<!-- not run: REASON -->' must stand right before a fenced block: {stray}"


def test_tests_named_by_not_run_notes_exist() -> None:
    """A note that says which test covers a block names a test file and functions that exist."""
    missing = []
    for block in ALL:
        if block.not_run is None:
            continue
        files = [REPO / "tests" / name for name in re.findall(r"tests/(test_\w+\.py)", block.not_run)]
        missing += [f"{block.name}: {path.name}" for path in files if not path.is_file()]
        source = "".join(path.read_text() for path in files if path.is_file())
        for name in re.findall(r"\b(test_\w+)\b(?!\.py)", block.not_run):
            if f"def {name}(" not in source:
                missing.append(f"{block.name}: {name}")
    assert not missing, missing


def test_examples_are_found() -> None:
    names = {b.name.split(":")[0] for b in RUNNABLE}
    assert "README.md" in names and len(RUNNABLE) >= 10, names


def test_relative_links_resolve() -> None:
    broken = []
    for page in PAGES:
        if not page.is_file():
            continue
        for target in LINK.findall(FENCE.sub("", page.read_text())):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, broken


# ---------------------------------------------------------------- figures from the model cards

# a column of the models tables -> where a model card keeps its figure (the first one present)
CARD_FIGURES = {  # the figures card_figures.py measured for every model the same way, else the metrics
    "FER+ PrivateTest": [("figures", "by_prior", "natural", "ferplus_test_accuracy"),
                         ("metrics", "test_ferplus_accuracy")],
    "FER2013 PrivateTest": [("figures", "by_prior", "natural", "fer2013_test_accuracy"),
                            ("metrics", "test_accuracy")],
    "ExpW-dev": [("figures", "by_prior", "natural", "expw_dev_classifier_accuracy"),
                 ("metrics", "expw_dev", "expw_classifier_accuracy")],
    "ExpW-dev, classifier alone": [("figures", "by_prior", "natural", "expw_dev_classifier_accuracy"),
                                   ("metrics", "expw_dev", "expw_classifier_accuracy")],
    "ExpW-dev, end to end": [("figures", "by_prior", "natural", "expw_dev_end_to_end_accuracy"),
                             ("metrics", "expw_dev", "expw_end_to_end_accuracy")],
    "parameters": [("metrics", "params")],
}


def _card_figure(card: dict, paths: list[tuple[str, ...]]) -> float | None:
    for path in paths:
        value = card
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            return value
    return None


def _model_rows(page: Path):
    """(model, column, cell) of every table whose first column is `model`."""
    header = None
    for line in page.read_text().splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells if cells[0] == "model" else []
        elif header and not set(line) <= set("|-: "):
            name = cells[0].strip("*`")
            if (REPO / "ferkit" / "weights" / f"{name}.json").is_file():
                yield from ((name, column, cell) for column, cell in zip(header, cells))


def test_models_tables_show_the_model_cards_figures() -> None:
    import json

    wrong, checked = [], 0
    for page in (REPO / "README.md", REPO / "docs" / "models.md"):
        for name, column, cell in _model_rows(page):
            if column not in CARD_FIGURES:
                continue
            card = json.loads((REPO / "ferkit" / "weights" / f"{name}.json").read_text())
            value = _card_figure(card, CARD_FIGURES[column])
            shown = re.search(r"[\d,.]+%?", cell.replace("*", ""))
            if value is None:
                ok = shown is None
            elif column == "parameters":
                ok = shown is not None and shown.group(0) == f"{int(value):,}"
            else:
                text = shown.group(0) if shown else ""
                decimals = len(text.rstrip("%").partition(".")[2])
                ok = text == f"{100 * value:.{decimals}f}%"
            checked += 1
            if not ok:
                wrong.append(f"{page.name}: {name}, {column}: {cell!r}, card {value!r}")
    assert checked >= 30, checked
    assert not wrong, wrong


# ---------------------------------------------------------------- the sandbox

def _slice_fer(shared: Path, out: Path) -> None:
    """The first rows of each Usage of the challenge CSV, and the FER+ votes of the same rows."""
    slice_fer(shared / "data/fer2013/fer2013.csv.gz", out / "data", SLICE, name="fer2013.csv.gz")


def _slice_expw(shared: Path, out: Path) -> None:
    """ExpW-dev's first few photos, with every labelled face in them."""
    src = shared / "data/expw-dev"
    (out / "data/expw-dev").mkdir(parents=True)
    lines = (src / "labels.csv").read_text().splitlines(keepends=True)
    photos: list[str] = []
    kept = [lines[0]]
    for line in lines[1:]:
        image = line.split(",", 1)[0]
        if image not in photos:
            if len(photos) == EXPW_PHOTOS:
                continue
            photos.append(image)
        kept.append(line)
    (out / "data/expw-dev/labels.csv").write_text("".join(kept))
    (out / "data/expw-dev/images").mkdir()
    for image in photos:
        (out / "data/expw-dev/images" / image).symlink_to(src / "images" / image)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shared = shared_dir()
    for need in ("data/photos/astronaut.png", "data/fer2013/fer2013.csv.gz",
                 "data/ferplus/ferplus_votes.csv.gz", "data/expw-dev/labels.csv"):
        if not (shared / need).is_file():
            pytest.skip(f"{shared / need} not found (set FERKIT_SHARED)")
    root = tmp_path_factory.mktemp("docs")
    small = root / "shared"
    _slice_fer(shared, small)
    _slice_expw(shared, small)
    (small / "data/photos").mkdir(parents=True)
    (small / "data/photos/astronaut.png").symlink_to(shared / "data/photos/astronaut.png")
    if (shared / "models").is_dir():
        (small / "models").symlink_to(shared / "models")
    work = root / "ferkit"
    work.mkdir()
    (work / "configs").symlink_to(REPO / "configs")
    _media(work, shared / "data/photos/astronaut.png", small / "data/fer2013/fer2013.csv.gz")
    return work


def _media(work: Path, photo: Path, fer_csv: Path) -> None:
    """clip.mp4: 60 frames of the astronaut's face moving; faces/: FER2013 faces as PNGs."""
    import numpy as np
    from PIL import Image
    from support.synthetic import moving_face_frames, write_video

    frames = moving_face_frames(photo, frames=60)
    write_video(frames, work / "clip.mp4")
    (work / "faces").mkdir()
    with gzip.open(fer_csv, "rt") as f:
        f.readline()
        for i in range(FACES):
            pixels = f.readline().split(",")[1]
            face = np.array(pixels.split(), dtype=np.uint8).reshape(48, 48)
            Image.fromarray(face).save(work / "faces" / f"face{i}.png")


def _env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FERKIT_SHARED"}
    bins = [str(REPO / ".venv" / "bin"), str(Path(sys.executable).parent), env.get("PATH", "")]
    env["PATH"] = os.pathsep.join(bins)
    env["PYTHONUNBUFFERED"] = "1"
    env["MPLBACKEND"] = "Agg"
    return env


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.name for b in RUNNABLE])
def test_example_runs(block: Block, sandbox: Path) -> None:
    if block.lang == "python":
        command = [sys.executable, "-c", block.code]
    else:
        assert shutil.which("bash"), "bash not found"
        command = ["bash", "-e", "-o", "pipefail", "-c", block.code]
    done = subprocess.run(command, cwd=sandbox, env=_env(sandbox), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, (
        f"{block.name} failed ({done.returncode}); mark it <!-- not run: REASON --> if it cannot run "
        f"here.\n--- block\n{block.code}--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}")
    if block.expected is not None:
        def words(text: str) -> list[list[str]]:
            return [line.split() for line in text.splitlines() if line.strip()]

        assert words(done.stdout) == words(block.expected), (
            f"{block.name} printed something else than the ```text block after it shows:\n{done.stdout}")
