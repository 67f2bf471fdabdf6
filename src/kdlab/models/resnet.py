"""CIFAR ResNets (He et al. 2016): a 3x3 stride-1 stem and stages of residual blocks.

One class serves the kdlab teacher and the CRD zoo: three stages of basic blocks (resnet8 ...
resnet110, resnet8x4, resnet32x4) or four of bottlenecks (RepDistiller's `resnetv2` ResNet-50,
the ImageNet widths on CIFAR's stem); they differ in block, blocks per stage and widths.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from kdlab.models.blocks import BlockFactory, classifier, conv_bn, make_stage
from kdlab.models.staged import StagedNet

BOTTLENECK_EXPANSION = 4  # a bottleneck's output is 4x its inner 3x3 width


class Residual(nn.Module):
    """`relu(body(x) + shortcut(x))`, the shortcut a 1x1 conv-BN when the shape changes."""

    def __init__(self, body: nn.Module, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.body = body
        same_shape = stride == 1 and in_ch == out_ch
        self.shortcut = (
            nn.Identity() if same_shape else conv_bn(in_ch, out_ch, 1, stride, relu=False)
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class BasicBlock(Residual):
    """Two 3x3 conv-BN layers (the first strided) around a shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        body = nn.Sequential(
            conv_bn(in_ch, out_ch, stride=stride), conv_bn(out_ch, out_ch, relu=False)
        )
        super().__init__(body, in_ch, out_ch, stride)


class Bottleneck(Residual):
    """1x1 reduce -> 3x3 (strided) -> 1x1 expand to `out_ch`, around a shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        mid = out_ch // BOTTLENECK_EXPANSION
        body = nn.Sequential(
            conv_bn(in_ch, mid, 1),
            conv_bn(mid, mid, stride=stride),
            conv_bn(mid, out_ch, 1, relu=False),
        )
        super().__init__(body, in_ch, out_ch, stride)


class CifarResNet(StagedNet):
    """`stem` (3x3 conv-BN-ReLU), `layer1` (stride 1), `layer2...` (stride 2), `head`.

    `widths` is (stem, layer1, layer2, ...), each a stage's output width; at 32x32 input the
    layers give 32, 16, 8 (, 4) px maps.
    """

    def __init__(
        self,
        num_classes: int,
        blocks: Sequence[int],
        widths: Sequence[int],
        in_channels: int = 3,
        block: BlockFactory = BasicBlock,
    ) -> None:
        stem_width, *stage_widths = widths
        stages: dict[str, nn.Module] = {"stem": conv_bn(in_channels, stem_width)}
        in_ch = stem_width
        for i, (n, width) in enumerate(zip(blocks, stage_widths, strict=True), start=1):
            stages[f"layer{i}"] = make_stage(block, in_ch, width, n, stride=1 if i == 1 else 2)
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


def cifar_resnet50(num_classes: int, in_channels: int = 3) -> CifarResNet:
    """ResNet-50's 3-4-6-3 bottlenecks (64...512 inner widths) on the 3x3 CIFAR stem."""
    widths = (64, *(w * BOTTLENECK_EXPANSION for w in (64, 128, 256, 512)))
    return CifarResNet(num_classes, (3, 4, 6, 3), widths, in_channels, block=Bottleneck)
