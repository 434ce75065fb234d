"""Run ferkit's command line as if some packages were not installed, and fail if it looked for them.

    python tests/support/without.py torch,safetensors,onnx,matplotlib -- predict photo.png --json
    python tests/support/without.py torch,safetensors --lookups-ok -- train ...   # its one-line error

The named top-level modules are hidden (a site-packages folder that holds one is replaced on the
import path by a view of it without them, so ``import torch`` fails as it would where torch is
absent), and every lookup of one of them is recorded. A lookup means the command tried to import
it (or asked whether it can, which only the commands that need it do). At the end the names looked
up, or found in ``sys.modules``, are printed to stderr and the exit status is 3; otherwise it is the
command's (with ``--lookups-ok`` always the command's: for commands that need what is hidden and
must say so). ``.ci/run`` uses it in a virtualenv where the packages are really absent, the tests in
the training environment.

``ferkit serve`` ends on SIGTERM (uvicorn shuts down, then raises the signal again: it is ignored
here so that the check still runs).
"""

from __future__ import annotations

import signal
import sys
import tempfile
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from pathlib import Path


class Watch(MetaPathFinder):
    """Records every lookup of the watched top-level modules; finds nothing itself."""

    def __init__(self, names: set[str]) -> None:
        self.names = names
        self.seen: list[str] = []

    def find_spec(self, fullname: str, path: Sequence[str] | None = None, target: object = None
                  ) -> ModuleSpec | None:
        if fullname.split(".")[0] in self.names:
            self.seen.append(fullname)
        return None


def _holds(folder: Path, names: set[str]) -> bool:
    """Whether an import-path folder holds one of ``names`` (module, package or distribution)."""
    return folder.is_dir() and any(_is_named(child.name, names) for child in folder.iterdir())


def _is_named(filename: str, names: set[str]) -> bool:
    """``torch``, ``torch.py``, ``torch-2.13.0.dist-info``... are torch's; ``torchgen`` is not."""
    return filename.split(".")[0].split("-")[0] in names


def hide(names: set[str]) -> None:
    """Replace each import-path folder that holds one of ``names`` by a view without them."""
    views = Path(tempfile.mkdtemp(prefix="ferkit-without-"))
    for i, entry in enumerate(list(sys.path)):
        folder = Path(entry or ".")
        if not _holds(folder, names):
            continue
        view = views / str(i)
        view.mkdir()
        for child in folder.iterdir():
            if not _is_named(child.name, names):
                (view / child.name).symlink_to(child)
        sys.path[i] = str(view)
    sys.path_importer_cache.clear()


def run(names: set[str], argv: list[str], lookups_ok: bool = False) -> int:
    hide(names)
    watch = Watch(names)
    sys.meta_path.insert(0, watch)
    signal.signal(signal.SIGTERM, lambda *_: None)
    from ferkit.cli import main

    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    looked = sorted(set(watch.seen) | {m for m in sys.modules if m.split(".")[0] in names})
    if looked and not lookups_ok:
        print(f"without.py: `ferkit {' '.join(argv[:1])}` looked for {', '.join(looked)}", file=sys.stderr)
        return 3
    return status


if __name__ == "__main__":
    lookups_ok = sys.argv[2:3] == ["--lookups-ok"]
    rest = sys.argv[3 if lookups_ok else 2 :]
    if len(sys.argv) < 3 or rest[:1] != ["--"]:
        sys.exit(__doc__)
    sys.exit(run(set(sys.argv[1].split(",")), rest[1:], lookups_ok))
