"""Building blocks of the paper's network: separable convolution, SE attention, residual block."""

from __future__ import annotations

import torch
import torch.nn as nn


class SeparableConv2d(nn.Module):
    """Depthwise KxK convolution followed by a pointwise 1x1 convolution (Chollet, Xception).

    Parameters: C1*K*K + C1*C2 instead of C1*K*K*C2 (the paper's Eq. 1), no biases since a
    batch norm always follows.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_ch, in_ch, kernel_size, stride, kernel_size // 2, groups=in_ch, bias=False
        )
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


def conv_kxk(in_ch: int, out_ch: int, separable: bool, kernel_size: int = 3) -> nn.Module:
    """A bias-free KxK convolution, separable or standard (the ablation switch)."""
    if separable:
        return SeparableConv2d(in_ch, out_ch, kernel_size)
    return nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False)


class ConvBNAct(nn.Sequential):
    """Standard convolution, batch norm, ReLU: the plain stem of the network."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation (Hu et al.): global pool, FC to C/r, ReLU, FC to C, sigmoid, scale."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(4, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=(2, 3))
        w = torch.sigmoid(self.fc2(torch.relu(self.fc1(w))))
        return x * w[:, :, None, None]


class ResidualSEBlock(nn.Module):
    """The paper's block (Fig. 6): two (separable) convolutions with batch norm, SE attention,
    a shortcut, then max-pool downsampling when ``downsample`` is set.

    The switches ``se``, ``separable`` and ``shortcut`` exist for the ablation study.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        *,
        downsample: bool = True,
        se: bool = True,
        separable: bool = True,
        shortcut: bool = True,
        se_reduction: int = 8,
    ) -> None:
        super().__init__()
        self.conv1 = conv_kxk(in_ch, out_ch, separable)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = conv_kxk(out_ch, out_ch, separable)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.se = SqueezeExcite(out_ch, se_reduction) if se else nn.Identity()
        self.pool = nn.MaxPool2d(3, 2, 1) if downsample else nn.Identity()
        self.shortcut: nn.Module | None = None
        if shortcut:
            stride = 2 if downsample else 1
            if in_ch == out_ch and stride == 1:
                self.shortcut = nn.Identity()
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.se(self.bn2(self.conv2(y)))
        y = self.pool(y)
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return torch.relu(y)
