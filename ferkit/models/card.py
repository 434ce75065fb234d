"""A model's headline figures, read from its card in one place.

``ferkit model list``, the REST service's ``/v1/models`` and the web page all show what a shipped
model is for and how well and how fast it does; they read it here so that no figure is typed
twice. The figures are in the card's ``figures`` section, written by
``benchmarks/card_figures.py`` (every shipped model measured the same way, under each class
prior), with the card's hand-written one-line ``purpose``. A figure the card lacks is None
(shown as "–"), never a guess.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

MISSING = "–"  # how a figure the card lacks is shown
# The figures measured under each prior: (key in the card's figures.by_prior.<prior>, label).
SCORES = (
    ("ferplus_test_accuracy", "FER+ PrivateTest accuracy (majority labels)"),
    ("ferplus_test_macro_f1", "FER+ PrivateTest macro-F1 (majority labels)"),
    ("expw_dev_end_to_end_accuracy", "ExpW-dev end-to-end accuracy (web photos; a missed face is wrong)"),
    ("expw_dev_end_to_end_macro_f1", "ExpW-dev end-to-end macro-F1"),
    ("fer2013_test_accuracy", "FER2013 PrivateTest accuracy (its own labels)"),
)


@dataclass(frozen=True)
class Headline:
    """What a model is for and its headline figures, all from its card."""

    name: str
    purpose: str
    labels: str  # what it was trained on: fer2013 | ferplus
    params: int | None
    prior: str | None  # the class prior the scores were measured under (what --prior auto gives)
    ferplus_test_accuracy: float | None = None
    ferplus_test_macro_f1: float | None = None
    expw_dev_end_to_end_accuracy: float | None = None
    expw_dev_end_to_end_macro_f1: float | None = None
    fer2013_test_accuracy: float | None = None
    crops_per_s: float | None = None  # onnxruntime, batch 64, on ``speed_on``
    speed_on: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def cells(self) -> dict[str, str]:
        """Each figure as shown to people: percentages, macro-F1 to 3 places, "–" where missing."""
        def pct(v: float | None) -> str:
            return MISSING if v is None else f"{v:.2%}"

        def f1(v: float | None) -> str:
            return MISSING if v is None else f"{v:.3f}"

        return {"ferplus": f"{pct(self.ferplus_test_accuracy)} / {f1(self.ferplus_test_macro_f1)}",
                "expw": f"{pct(self.expw_dev_end_to_end_accuracy)} / {f1(self.expw_dev_end_to_end_macro_f1)}",
                "fer2013": pct(self.fer2013_test_accuracy),
                "params": MISSING if self.params is None else f"{self.params:,d}",
                "speed": MISSING if self.crops_per_s is None else f"{self.crops_per_s:,.0f}"}


def headline(card: dict[str, Any], name: str) -> Headline:
    """The headline of a card: its scores under the prior that ``--prior auto`` resolves to for it
    (balanced where the card records its training prior), since that is what a user gets."""
    figures = card.get("figures") or {}
    # What ferkit.runtime.prior.resolved(card, "auto") gives (the models layer cannot import the
    # runtime; tests/test_model_cards.py holds the two to the same answer).
    prior = "balanced" if "natural" in (card.get("prior") or {}) else "natural"
    scores = (figures.get("by_prior") or {}).get(prior) or {}
    speed = figures.get("speed") or {}
    return Headline(
        name=name, purpose=card.get("purpose") or card.get("description", ""),
        labels=card.get("labels", (card.get("train_config") or {}).get("labels", "fer2013")),
        params=(card.get("metrics") or {}).get("params"),
        prior=prior if scores else None,
        **{key: _number(scores.get(key)) for key, _ in SCORES},
        crops_per_s=_number(speed.get("crops_per_s")),
        speed_on=speed.get("on"),
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
