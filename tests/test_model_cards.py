"""The shipped cards' headline figures (:mod:`ferkit.models.card`): every card has them, and a card
without them shows "–" instead of failing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import ferkit.models.store as store
from ferkit.cli import main
from ferkit.models.card import MISSING, SCORES, headline
from ferkit.runtime.prior import resolved


@pytest.mark.parametrize("name", store.list_models())
def test_every_shipped_card_has_a_purpose_and_every_headline_figure(name: str) -> None:
    card = store.read_card(store.WEIGHTS_DIR / f"{name}.json")
    head = headline(card, name)
    assert head.purpose and head.purpose == card["purpose"] and "\n" not in head.purpose
    assert head.prior == "balanced" and head.params == card["metrics"]["params"]
    for key, _ in SCORES:
        assert 0 < getattr(head, key) < 1, key
    assert head.crops_per_s and head.speed_on
    assert MISSING not in "".join(head.cells().values())
    for prior in ("balanced", "natural"):  # the command that measured them is recorded with them
        assert set(dict(SCORES)) <= set(card["figures"]["by_prior"][prior])
    assert card["figures"]["command"].startswith(".venv/bin/python benchmarks/card_figures.py")


def test_the_headline_prior_is_what_prior_auto_gives() -> None:
    """card.py cannot import the runtime (layers), so it restates ferkit.runtime.prior's rule."""
    card = store.read_card(store.WEIGHTS_DIR / "default.json")
    assert headline(card, "default").prior == resolved(card, "auto") == "balanced"
    card["figures"]["by_prior"]["natural"]["ferplus_test_accuracy"] = 0.5
    del card["prior"]
    assert resolved(card, "auto") == "natural" == headline(card, "default").prior
    assert headline(card, "default").ferplus_test_accuracy == 0.5


def test_a_card_without_figures_shows_dashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    card = store.read_card(store.WEIGHTS_DIR / "paper.json")
    for key in ("figures", "purpose"):
        card.pop(key, None)
    head = headline(card, "paper")
    assert head.ferplus_test_accuracy is None and head.crops_per_s is None and head.prior is None
    assert head.cells()["ferplus"] == f"{MISSING} / {MISSING}" and head.purpose == card["description"]
    (tmp_path / "paper.json").write_text(json.dumps(card))
    shutil.copy(store.WEIGHTS_DIR / "paper.onnx", tmp_path / "paper.onnx")
    monkeypatch.setattr(store, "WEIGHTS_DIR", tmp_path)
    assert main(["model", "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("paper ") and f"{MISSING} / {MISSING}" in out
