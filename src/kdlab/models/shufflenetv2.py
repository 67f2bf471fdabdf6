"""ShuffleNetV2 1.0x (Ma et al. 2018) in CRD's CIFAR form (RepDistiller's `ShuffleV2`): a 1x1
stride-1 stem, no max-pool."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kdlab.models.blocks import classifier, conv_bn, make_stage
from kdlab.models.staged import StagedNet

STEM_WIDTH = 24
STAGES = ((116, 4), (232, 8), (464, 4))  # (width, units) at 1.0x
LAST_WIDTH = 1024


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Interleave the channels of `groups` groups so the branches mix in the next unit."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    """Two branches concatenated then shuffled.

    Stride 1: half the channels pass through, the other half go through 1x1-dw3x3-1x1.
    Stride 2: both branches see all channels and downsample, doubling the width.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        mid = out_ch // 2
        self.downsample = stride > 1
        self.left: nn.Module = (
            nn.Sequential(
                conv_bn(in_ch, in_ch, 3, stride, groups=in_ch, relu=False),
                conv_bn(in_ch, mid, 1),
            )
            if self.downsample
            else nn.Identity()
        )
        self.right = nn.Sequential(
            conv_bn(in_ch if self.downsample else mid, mid, 1),
            conv_bn(mid, mid, 3, stride, groups=mid, relu=False),
            conv_bn(mid, mid, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        left, right = (x, x) if self.downsample else x.chunk(2, dim=1)
        out = torch.cat((self.left(left), self.right(right)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(StagedNet):
    """`stem`, `layer1..3` (each opens with a stride-2 unit), then a `head` of the 1x1 conv to
    1024, the pool and the linear layer (the embedding is the pooled 1024)."""

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        stages: dict[str, nn.Module] = {"stem": conv_bn(in_channels, STEM_WIDTH, 1)}
        in_ch = STEM_WIDTH
        for i, (width, n) in enumerate(STAGES, start=1):
            stages[f"layer{i}"] = make_stage(ShuffleUnit, in_ch, width, n, stride=2)
            in_ch = width
        head = classifier(LAST_WIDTH, num_classes, conv_bn(in_ch, LAST_WIDTH, 1))
        super().__init__(stages, head)
