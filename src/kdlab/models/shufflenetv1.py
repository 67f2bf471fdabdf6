"""ShuffleNet (V1, Zhang et al. 2018) with 3 groups in CRD's CIFAR form (RepDistiller's
`ShuffleV1`): a 1x1 stride-1 stem, no max-pool, stages of 240/480/960 channels."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kdlab.models.blocks import classifier, conv_bn, make_stage
from kdlab.models.shufflenetv2 import channel_shuffle
from kdlab.models.staged import StagedNet

STEM_WIDTH = 24
STAGES = ((240, 4), (480, 8), (960, 4))  # (width, units)
GROUPS = 3
BOTTLENECK_RATIO = 4  # the branch's inner width is a quarter of its output


class ShuffleUnitV1(nn.Module):
    """Grouped 1x1 -> channel shuffle -> 3x3 depthwise -> grouped 1x1, then ReLU of the sum
    with the input; a stride-2 unit instead concatenates a 3x3 average pool of the input, so
    its branch makes only `out_ch - in_ch` channels.

    As the paper, the first 1x1 on the thin 24-channel stem output is not grouped; as
    RepDistiller (not the paper), the depthwise conv is followed by a ReLU.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.downsample = stride > 1
        branch_out = out_ch - in_ch if self.downsample else out_ch
        mid = branch_out // BOTTLENECK_RATIO
        self.input_groups = 1 if in_ch == STEM_WIDTH else GROUPS
        self.reduce = conv_bn(in_ch, mid, 1, groups=self.input_groups)
        self.branch = nn.Sequential(
            conv_bn(mid, mid, 3, stride, groups=mid),
            conv_bn(mid, branch_out, 1, groups=GROUPS, relu=False),
        )
        self.shortcut: nn.Module = (
            nn.AvgPool2d(3, stride=2, padding=1) if self.downsample else nn.Identity()
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.branch(channel_shuffle(self.reduce(x), self.input_groups))
        skip = self.shortcut(x)
        return self.relu(torch.cat((out, skip), dim=1) if self.downsample else out + skip)


class ShuffleNetV1(StagedNet):
    """`stem` (1x1 conv-BN-ReLU), `layer1..3` (each opens with a stride-2 unit), `head`."""

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        stages: dict[str, nn.Module] = {"stem": conv_bn(in_channels, STEM_WIDTH, 1)}
        in_ch = STEM_WIDTH
        for i, (width, n) in enumerate(STAGES, start=1):
            stages[f"layer{i}"] = make_stage(ShuffleUnitV1, in_ch, width, n, stride=2)
            in_ch = width
        super().__init__(stages, classifier(in_ch, num_classes))
