"""MobileNetV2 (Sandler et al. 2018) in CRD's CIFAR form: half width, `mobile_half`."""

from __future__ import annotations

from functools import partial

from torch import Tensor, nn

from kdlab.models.blocks import classifier, conv_bn, make_stage
from kdlab.models.staged import StagedNet

# (expansion t, output channels c at width 1.0, blocks n, first stride s) per stage; CRD keeps
# stage two at stride 1 (ImageNet's 2) so a 32 px input ends at 2x2.
CIFAR_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
LAST_WIDTH = 1280  # not scaled down by width_mult < 1, as in the paper


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> linear 1x1 project; residual when the shape is kept."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_ch * expansion
        expand = [conv_bn(in_ch, hidden, 1)] if expansion != 1 else []
        self.body = nn.Sequential(
            *expand,
            conv_bn(hidden, hidden, 3, stride, groups=hidden),
            conv_bn(hidden, out_ch, 1, relu=False),
        )
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class MobileNetV2(StagedNet):
    """`stem` (stride 2), `layer1..7` (one per settings row), 1x1 `conv_last` to 1280, `head`."""

    def __init__(self, num_classes: int, width_mult: float = 0.5, in_channels: int = 3) -> None:
        in_ch = int(32 * width_mult)
        stages: dict[str, nn.Module] = {"stem": conv_bn(in_channels, in_ch, stride=2)}
        for i, (t, c, n, s) in enumerate(CIFAR_SETTINGS, start=1):
            out_ch = int(c * width_mult)
            stages[f"layer{i}"] = make_stage(
                partial(InvertedResidual, expansion=t), in_ch, out_ch, n, stride=s
            )
            in_ch = out_ch
        stages["conv_last"] = conv_bn(in_ch, LAST_WIDTH, 1)
        super().__init__(stages, classifier(LAST_WIDTH, num_classes))
