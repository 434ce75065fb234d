"""The Robust Improved Network of Gao & Ma (section 3), with switches for the ablation study.

A plain convolutional stem, then stages of residual blocks built from depthwise-separable
convolutions, batch norm and Squeeze-and-Excitation, dropout, global pooling and a 7-way
classifier. Widths are ferkit's choice (the paper gives none): the stem downsamples once so
that the depthwise convolutions, slow on CPUs, never run at the full 48x48 resolution. The
constructor's defaults are the full widths (815,127 parameters; configs/paper-wide.toml), kept
so that weights saved without explicit widths still load; the shipped `paper` and `default`
use half of them (configs/paper.toml: 209,423 parameters, 15.4 M multiply-adds per face), which
lets onnxruntime classify faces at 2.5 times the rate of `fer`'s model on two CPU cores
(benchmarks/width_speed.py; the full widths 0.8 times, 1.2 as int8).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
import torch.nn as nn

from ferkit.face import NUM_CLASSES
from ferkit.models.blocks import ConvBNAct, ResidualSEBlock
from ferkit.models.registry import register_model


class PaperNet(nn.Module):
    def __init__(
        self,
        stem: Sequence[int] = (32, 64),
        widths: Sequence[int] = (128, 256, 512),
        blocks_per_stage: int = 1,
        *,
        se: bool = True,
        separable: bool = True,
        shortcut: bool = True,
        dropout: float = 0.3,
        num_classes: int = NUM_CLASSES,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 1
        for i, ch in enumerate(stem):
            # The last stem convolution halves the resolution (48 -> 24).
            layers.append(ConvBNAct(in_ch, ch, stride=2 if i == len(stem) - 1 else 1))
            in_ch = ch
        self.stem = nn.Sequential(*layers)
        stages: list[nn.Module] = []
        for ch in widths:
            for b in range(blocks_per_stage):
                stages.append(
                    ResidualSEBlock(
                        in_ch, ch, downsample=b == blocks_per_stage - 1,
                        se=se, separable=separable, shortcut=shortcut,
                    )
                )
                in_ch = ch
        self.stages = nn.Sequential(*stages)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(in_ch, num_classes)
        self.num_features = in_ch

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).mean(dim=(2, 3))
        return self.head(self.dropout(x))


# What each option does: the model.* keys of a training config (``ferkit train --list-keys``).
PAPER_NET_OPTIONS = {
    "stem": "channels of the plain stem convolutions; the last one halves the resolution",
    "widths": "channels of each stage of residual blocks; each stage ends by halving the resolution",
    "blocks_per_stage": "residual blocks per stage",
    "se": "Squeeze-and-Excitation attention in each block (ablation switch)",
    "separable": "depthwise separable convolutions; false: standard ones (ablation switch)",
    "shortcut": "residual shortcuts (ablation switch)",
    "dropout": "dropout before the classifier",
    "num_classes": "outputs of the classifier (FER2013's 7 emotions)",
}


@register_model
def paper_net(**kwargs) -> PaperNet:
    """The paper's network at ferkit's default widths."""
    return PaperNet(**kwargs)


paper_net.__signature__ = inspect.signature(PaperNet)  # its options, for model_options()
paper_net.option_help = PAPER_NET_OPTIONS
