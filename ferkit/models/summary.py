"""Per-layer parameter counts, multiply-adds per face, and the paper's Eq. 1 for every separable
convolution."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ferkit.models.blocks import SeparableConv2d


@dataclass
class SeparableSaving:
    name: str
    c1: int
    c2: int
    k: int
    separable_params: int  # counted from the real layers
    standard_params: int  # C1*K*K*C2: the standard convolution it replaces

    @property
    def ratio(self) -> float:
        return self.separable_params / self.standard_params

    @property
    def eq1(self) -> float:
        """Eq. 1: (C1*K*K + C1*C2) / (C1*K*K*C2) = 1/C2 + 1/K^2."""
        return 1 / self.c2 + 1 / self.k**2


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_multiply_adds(model: nn.Module, side: int = 48) -> int:
    """Multiply-adds of one side x side gray face through the convolutions and linear layers
    (what inference cost scales with; pooling, norms and activations are left out)."""
    macs = 0

    def count(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            macs += output.numel() * module.in_channels // module.groups * k
        elif isinstance(module, nn.Linear):
            macs += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 1, side, side))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return macs


def separable_savings(model: nn.Module) -> list[SeparableSaving]:
    out = []
    for name, m in model.named_modules():
        if isinstance(m, SeparableConv2d):
            c1, c2, k = m.depthwise.in_channels, m.pointwise.out_channels, m.depthwise.kernel_size[0]
            out.append(SeparableSaving(name, c1, c2, k, count_params(m), c1 * k * k * c2))
    return out


def layer_table(model: nn.Module) -> list[tuple[str, str, int]]:
    """(name, type, parameters) for every module that owns parameters directly."""
    rows = []
    for name, m in model.named_modules():
        own = sum(p.numel() for p in m.parameters(recurse=False))
        if own:
            rows.append((name, type(m).__name__, own))
    return rows


def format_summary(model: nn.Module, title: str) -> str:
    lines = [title, "", f"{'layer':45s} {'type':14s} {'params':>9s}"]
    lines += [f"{n:45s} {t:14s} {p:9,d}" for n, t, p in layer_table(model)]
    lines += ["", f"total parameters: {count_params(model):,}",
              f"multiply-adds per 48x48 face: {count_multiply_adds(model) / 1e6:.1f} M"]
    savings = separable_savings(model)
    if savings:
        lines += ["", "separable convolutions vs the standard convolutions they replace (Eq. 1):",
                  f"{'layer':32s} {'C1':>4s} {'C2':>4s} {'K':>2s} {'separable':>10s} {'standard':>10s} "
                  f"{'ratio':>8s} {'1/C2+1/K^2':>10s}"]
        for s in savings:
            lines.append(f"{s.name:32s} {s.c1:4d} {s.c2:4d} {s.k:2d} {s.separable_params:10,d} "
                         f"{s.standard_params:10,d} {s.ratio:8.4f} {s.eq1:10.4f}")
        sep = sum(s.separable_params for s in savings)
        std = sum(s.standard_params for s in savings)
        lines.append(f"all separable layers: {sep:,} parameters instead of {std:,} ({std / sep:.1f}x fewer)")
    return "\n".join(lines)
