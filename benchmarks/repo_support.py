"""Puts the repository's ``tests/`` folder on the import path, so that a benchmark can use
``support`` (a real ``ferkit serve``, media made from one real photo, malformed requests): the
same helpers the tests use, which the installed package does not ship.

Import it before ``support``: ``import repo_support  # noqa: F401``.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
