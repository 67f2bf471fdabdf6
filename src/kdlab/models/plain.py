"""Plain CNNs: conv-BN-ReLU blocks and max-pools, no shortcuts.

One class builds kdlab's students (note 1's `cnn_student`, note 2's deeper and thinner
`fitnet_student`) and the CIFAR VGGs with BatchNorm used in the CRD zoo.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from kdlab.models.blocks import classifier, conv_bn
from kdlab.models.staged import StagedNet


@dataclass(frozen=True)
class ConvBlock:
    """One feature point: an optional 2x2 max-pool (halving the map), then 3x3 conv-BN-ReLUs."""

    widths: tuple[int, ...]
    pool: bool = False


def block(*widths: int, pool: bool = False) -> ConvBlock:
    """Shorthand that keeps the architecture tables below one line per block."""
    return ConvBlock(widths, pool)


class PlainCNN(StagedNet):
    """`block1..N` as specified, then a global-average-pool + linear `head`."""

    def __init__(
        self, num_classes: int, blocks: Sequence[ConvBlock], in_channels: int = 3
    ) -> None:
        stages: dict[str, nn.Module] = {}
        in_ch = in_channels
        for i, spec in enumerate(blocks, start=1):
            layers: list[nn.Module] = [nn.MaxPool2d(2)] if spec.pool else []
            for width in spec.widths:
                layers.append(conv_bn(in_ch, width))
                in_ch = width
            stages[f"block{i}"] = nn.Sequential(*layers)
        super().__init__(stages, classifier(in_ch, num_classes))
        # each block's last conv-BN-ReLU: its ReLU and BN (models.preact)
        self.preact_taps = {
            f"block{i}": (f"block{i}.{len(stage) - 1}.2", f"block{i}.{len(stage) - 1}.1")
            for i, stage in enumerate(stages.values(), start=1)
        }


# Blocks at 32, 32 | 16, 16, 16 | 8 px; the middle point block4 is 16x16. ~178K params.
CNN_STUDENT = (
    block(32), block(32),
    block(64, pool=True), block(64), block(64),
    block(128, pool=True),
)  # fmt: skip

# Nine layers, thinner and deeper (FitNets): 32 px x3 | 16 px x3 | 8 px x3; block5 is 16x16.
FITNET_STUDENT = (
    block(16), block(32), block(32),
    block(48, pool=True), block(48), block(64),
    block(80, pool=True), block(96), block(128),
)  # fmt: skip

# CIFAR VGG as in CRD: five conv groups, pools after the first three and a 4x4 map at the end.
VGG8 = (
    block(64),
    block(128, pool=True),
    block(256, pool=True),
    block(512, pool=True),
    block(512),
)
VGG13 = (
    block(64, 64),
    block(128, 128, pool=True),
    block(256, 256, pool=True),
    block(512, 512, pool=True),
    block(512, 512),
)
