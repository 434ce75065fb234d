"""The paper's network: Eq. 1 against real parameter counts, shapes, ablation switches."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import run_ferkit

from ferkit.models import create_model
from ferkit.models.blocks import SeparableConv2d
from ferkit.models.summary import count_params, separable_savings


@pytest.mark.parametrize("c1,c2,k", [(16, 32, 3), (64, 128, 3), (32, 256, 5)])
def test_eq1_matches_real_parameter_counts(c1, c2, k):
    sep = SeparableConv2d(c1, c2, k)
    std = torch.nn.Conv2d(c1, c2, k, bias=False)
    assert count_params(sep) / count_params(std) == pytest.approx(1 / c2 + 1 / k**2, rel=1e-12)


def test_every_separable_layer_of_the_paper_net_obeys_eq1():
    savings = separable_savings(create_model("paper_net"))
    assert len(savings) == 6
    for s in savings:
        assert s.ratio == pytest.approx(s.eq1, rel=1e-12)


@pytest.mark.parametrize("se,separable,shortcut", list(itertools.product([True, False], repeat=3)))
def test_output_shapes_for_every_ablation(se, separable, shortcut):
    model = create_model("paper_net", stem=[8, 16], widths=[16, 32], se=se, separable=separable,
                         shortcut=shortcut).eval()
    assert model(torch.randn(5, 1, 48, 48)).shape == (5, 7)
    has_sep = any(isinstance(m, SeparableConv2d) for m in model.modules())
    assert has_sep == separable


def test_standard_convolutions_cost_more_parameters():
    standard = count_params(create_model("paper_net", separable=False))
    assert standard > 4 * count_params(create_model("paper_net"))


def test_model_summary_cli_prints_eq1():
    result = run_ferkit("model", "summary", "paper")
    assert result.returncode == 0, result.stderr
    assert "1/C2+1/K^2" in result.stdout and "total parameters" in result.stdout


def test_multiply_adds_count_by_hand():
    from ferkit.models.summary import count_multiply_adds

    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),  # 48*48 outputs x 4 channels x 9 taps
        SeparableConv2d(4, 8),  # depthwise 48*48*4*9, pointwise 48*48*8*4
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 7),
    )
    assert count_multiply_adds(net) == 48 * 48 * (4 * 9 + 4 * 9 + 8 * 4) + 8 * 7
    assert net.training  # left as it was found
    result = run_ferkit("model", "summary", "paper")
    assert "multiply-adds per 48x48 face: 15.4 M" in result.stdout
    assert "multiply-adds per 48x48 face: 59.1 M" in run_ferkit("model", "summary", "paper-wide").stdout
