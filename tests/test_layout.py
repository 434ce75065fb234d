"""The package's layout as the README describes it: layers that import only downwards, no import
cycles (counting imports inside functions), and PyTorch and the other training packages imported
at module level only by the modules that training needs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "ferkit"
# Bottom to top: a module imports from its own layer and the layers below it.
LAYERS = [
    {"ferkit.errors", "ferkit.face", "ferkit.imageio", "ferkit.imageops", "ferkit.cpu", "ferkit.figures"},
    {"ferkit.data"},
    {"ferkit.models"},
    {"ferkit.runtime"},
    {"ferkit.inference"},
    {"ferkit.evaluate"},
    {"ferkit.train"},
    {"ferkit.batch"},
    {"ferkit.serve"},
    {"ferkit.cli", "ferkit.__main__"},
]
# The package itself is the public face (Recognizer, list_models, load_model, loaded on first use);
# any module may read its __version__.
ROOT = "ferkit"
TRAINING_PACKAGES = {"torch", "safetensors", "onnx", "matplotlib"}  # the train and plot extras
# The modules that may import them at the top (everything else imports them on first use, if ever).
TRAINING_MODULES = {"ferkit.figures", "ferkit.models.blocks", "ferkit.models.io", "ferkit.models.paper",
                    "ferkit.models.preprocess", "ferkit.models.registry", "ferkit.models.summary",
                    "ferkit.runtime.export", "ferkit.runtime.torch_backend"}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str) -> list[tuple[str, bool]]:
    """(imported module, at module level) for every import in a module, in functions too."""
    tree = ast.parse(MODULES[name].read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:  # `from ferkit.models import paper` imports a module
                sub = f"{node.module}.{alias.name}"
                found.append((sub if sub in MODULES else node.module, id(node) in top))
    return found


def layer(name: str) -> int:
    if name == ROOT:
        return len(LAYERS) - 1
    return next(i for i, prefixes in enumerate(LAYERS)
                if any(name == p or name.startswith(p + ".") for p in prefixes))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name):
    for target, _ in imports(name):
        if target in MODULES and target != ROOT:
            assert layer(target) <= layer(name), f"{name} imports {target} from a layer above it"


def test_no_import_cycles():
    graph = {name: {t for t, _ in imports(name) if t in MODULES and t != ROOT} for name in MODULES}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(name):] + [name]))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, path + [name])
        done.add(name)

    for name in MODULES:
        visit(name, [])


@pytest.mark.parametrize("name", sorted(set(MODULES) - TRAINING_MODULES))
def test_the_runtime_imports_no_training_package_at_module_level(name):
    if layer(name) == layer("ferkit.train"):
        return  # training itself
    eager = {t.split(".")[0] for t, top in imports(name) if top} & TRAINING_PACKAGES
    assert not eager, f"{name} imports {', '.join(sorted(eager))} when it is imported"
