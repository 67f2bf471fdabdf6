"""Plain CNNs: conv-BN-ReLU blocks and max-pools, no shortcuts.

One class builds kdlab's students (note 1's `cnn_student`, note 2's deeper and thinner
`fitnet_student`) and the CIFAR VGGs with BatchNorm used in the CRD zoo (RepDistiller's
`vgg*_bn`, less the conv biases that their BatchNorm cancels).
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
    """`block1..N` as specified, then a global-average-pool + linear `head`.

    `has_stem`: block1 is the references' stem and the others their stages (the VGGs); kdlab's
    own students have no reference taps (see StagedNet).
    """

    def __init__(
        self,
        num_classes: int,
        blocks: Sequence[ConvBlock],
        in_channels: int = 3,
        has_stem: bool = False,
    ) -> None:
        stages: dict[str, nn.Module] = {}
        in_ch = in_channels
        for i, spec in enumerate(blocks, start=1):
            layers: list[nn.Module] = [nn.MaxPool2d(2)] if spec.pool else []
            for width in spec.widths:
                layers.append(conv_bn(in_ch, width))
                in_ch = width
            stages[f"block{i}"] = nn.Sequential(*layers)
        super().__init__(stages, classifier(in_ch, num_classes), has_stem)
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


def cifar_vgg(*groups: tuple[int, ...]) -> tuple[ConvBlock, ...]:
    """RepDistiller's CIFAR VGG: five conv groups with a max-pool before the 2nd, 3rd and 4th
    (none before the 5th), so a 32 px input ends at 4x4. Group one's output is its f0 (the
    stem), groups two to five give f1..f4, each after its last ReLU and before the next pool."""
    return tuple(block(*widths, pool=0 < i < 4) for i, widths in enumerate(groups))


VGG8 = cifar_vgg((64,), (128,), (256,), (512,), (512,))
VGG11 = cifar_vgg((64,), (128,), (256, 256), (512, 512), (512, 512))
VGG13 = cifar_vgg((64, 64), (128, 128), (256, 256), (512, 512), (512, 512))
VGG16 = cifar_vgg((64, 64), (128, 128), (256,) * 3, (512,) * 3, (512,) * 3)
VGG19 = cifar_vgg((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4)
