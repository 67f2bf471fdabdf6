"""CIFAR ResNets (He et al. 2016): a 3x3 stem and three stages of basic blocks.

One class serves the kdlab teacher and the CRD zoo (resnet8 ... resnet110, resnet8x4,
resnet32x4); they differ only in blocks per stage and widths.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from kdlab.models.blocks import classifier, conv_bn, make_stage
from kdlab.models.staged import StagedNet


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut (1x1 conv-BN when the shape changes), then ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(in_ch, out_ch, stride=stride), conv_bn(out_ch, out_ch, relu=False)
        )
        same_shape = stride == 1 and in_ch == out_ch
        self.shortcut = (
            nn.Identity() if same_shape else conv_bn(in_ch, out_ch, 1, stride, relu=False)
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class CifarResNet(StagedNet):
    """`stem` (3x3 conv-BN-ReLU), `layer1` (stride 1), `layer2` and `layer3` (stride 2), `head`.

    `widths` is (stem, layer1, layer2, layer3); at 32x32 input the layers give 32, 16, 8 px maps.
    """

    def __init__(
        self,
        num_classes: int,
        blocks: Sequence[int],
        widths: Sequence[int],
        in_channels: int = 3,
    ) -> None:
        stem_width, *stage_widths = widths
        stages: dict[str, nn.Module] = {"stem": conv_bn(in_channels, stem_width)}
        in_ch = stem_width
        for i, (n, width) in enumerate(zip(blocks, stage_widths, strict=True), start=1):
            stages[f"layer{i}"] = make_stage(BasicBlock, in_ch, width, n, stride=1 if i == 1 else 2)
            in_ch = width
        super().__init__(stages, classifier(in_ch, num_classes))
        # each stage's last block: the sum before its ReLU, its second BN (models.preact)
        self.preact_taps = {
            f"layer{i}": (f"layer{i}.{n - 1}.relu", f"layer{i}.{n - 1}.body.1.1")
            for i, n in enumerate(blocks, start=1)
        }


def cifar_resnet(
    num_classes: int, depth: int, widths: Sequence[int] = (16, 16, 32, 64), in_channels: int = 3
) -> CifarResNet:
    """ResNet-`depth` with depth = 6n + 2: n basic blocks in each of the three stages."""
    n = (depth - 2) // 6
    return CifarResNet(num_classes, blocks=(n, n, n), widths=widths, in_channels=in_channels)
