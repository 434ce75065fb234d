"""Loaders for image folders: the FER2013 ``train/``+``test/`` layout (also straight from its
``.tar.gz``) and a plain folder of class sub-folders (CK+, JAFFE or any export of that shape;
CK+'s ``contempt/`` is skipped with a warning, any other unknown folder name is an error)."""

from __future__ import annotations

import re
import sys
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from ferkit.data.dataset import OTHER, USAGES, FerData, stack
from ferkit.errors import DataError, ImageError
from ferkit.face import EXTRA_CLASSES, class_index
from ferkit.imageio import IMAGE_SUFFIXES, load_gray

_USAGE_PREFIX = re.compile(r"^(Training|PublicTest|PrivateTest)_(\d+)")


def to_48_gray(gray: np.ndarray) -> np.ndarray:
    """Resize a grayscale face to FER2013's 48x48 (no-op for FER2013 itself)."""
    if gray.shape == (48, 48):
        return gray
    return np.asarray(Image.fromarray(gray).resize((48, 48), Image.Resampling.BILINEAR))


def _usage_of(split_dir: str, filename: str) -> tuple[int, int]:
    """(usage, image id) from a FER2013 file name; files without the prefix follow their folder."""
    m = _USAGE_PREFIX.match(filename)
    if m:
        return USAGES.index(m.group(1)), int(m.group(2))
    return (0 if split_dir == "train" else 2), -1


def _class_of(folder: str, where: str) -> int:
    try:
        return class_index(folder)
    except KeyError:
        raise DataError(f"{where}: unknown class folder {folder!r}") from None


def _decode(data: bytes | Path, where: str) -> np.ndarray:
    try:
        return to_48_gray(load_gray(data))
    except ImageError as exc:
        raise DataError(f"{where}: unreadable image ({exc})") from None


def is_fer_layout(path: Path) -> bool:
    return (path / "train").is_dir() and (path / "test").is_dir()


def _build(entries: list[tuple[tuple, int, int, str, np.ndarray]], origin: str) -> FerData:
    entries.sort(key=lambda e: e[0])
    return FerData(
        images=stack([e[4] for e in entries]),
        labels=np.array([e[1] for e in entries], dtype=np.int64),
        usage=np.array([e[2] for e in entries], dtype=np.int8),
        sources=[e[3] for e in entries],
        origin=origin,
    )


def load_fer_folders(root: str | Path) -> FerData:
    """``root/{train,test}/<class>/<Usage>_<id>.jpg``, sorted like the challenge CSV."""
    root = Path(root)
    entries = []
    for split_dir in ("train", "test"):
        for file in sorted((root / split_dir).rglob("*")):
            if file.suffix.lower() not in IMAGE_SUFFIXES or not file.is_file():
                continue
            label = _class_of(file.parent.name, str(file))
            usage, image_id = _usage_of(split_dir, file.name)
            key = (usage, image_id, str(file))
            entries.append((key, label, usage, str(file), _decode(file, str(file))))
    if not entries:
        raise DataError(f"{root}: no images under train/ and test/")
    return _build(entries, str(root))


def load_fer_tarball(path: str | Path) -> FerData:
    """The FER2013 image-folder layout read straight from its ``.tar.gz``, without extracting."""
    path = Path(path)
    entries = []
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                p = PurePosixPath(member.name)
                if not member.isfile() or p.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                parts = p.parts
                if len(parts) < 3 or parts[-3] not in ("train", "test"):
                    continue
                where = f"{path}:{member.name}"
                label = _class_of(parts[-2], where)
                usage, image_id = _usage_of(parts[-3], p.name)
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                entries.append(((usage, image_id, member.name), label, usage, where, _decode(data, where)))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read archive: {exc}") from None
    if not entries:
        raise DataError(f"{path}: no train/ or test/ class folders in the archive")
    return _build(entries, str(path))


def load_class_folders(root: str | Path) -> FerData:
    """``root/<class>/*`` with any subset of the 7 class names; images of any size and mode."""
    root = Path(root)
    entries = []
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{root}: no class sub-folders (expected e.g. {root}/happy/*.png)")
    known = []
    for d in class_dirs:
        if d.name.strip().lower() in EXTRA_CLASSES:
            print(f"warning: {d}: skipped, not one of the 7 FER2013 classes", file=sys.stderr)
        else:
            known.append(d)
    for d in known:
        label = _class_of(d.name, str(d))
        for file in sorted(d.rglob("*")):
            if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES:
                entries.append(((label, str(file)), label, OTHER, str(file), _decode(file, str(file))))
    if not entries:
        raise DataError(f"{root}: no images in folders named after the 7 FER2013 classes")
    return _build(entries, str(root))
