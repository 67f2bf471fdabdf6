"""MobileNetV2 (Sandler et al. 2018) in CRD's CIFAR form: half width, RepDistiller's
`mobile_half`."""

from __future__ import annotations

from torch import Tensor, nn

from kdlab.models.blocks import classifier, conv_bn
from kdlab.models.staged import StagedNet

# (expansion t, output channels c at width 1.0, blocks n, first stride s) per settings row;
# CRD keeps row two at stride 1 (ImageNet's 2) so a 32 px input ends at 2x2. The rows are
# grouped into the four stages whose outputs RepDistiller taps (f1..f4: rows 2, 3, 5 and 7).
CIFAR_STAGES = (
    ((1, 16, 1, 1), (6, 24, 2, 1)),
    ((6, 32, 3, 2),),
    ((6, 64, 4, 2), (6, 96, 3, 1)),
    ((6, 160, 3, 2), (6, 320, 1, 1)),
)
LAST_WIDTH = 1280  # not scaled down by width_mult < 1, as in the paper


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> linear 1x1 project; residual when the shape is kept.

    RepDistiller keeps the 1x1 expansion at t = 1 too (the paper drops it there).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_ch * expansion
        self.body = nn.Sequential(
            conv_bn(in_ch, hidden, 1),
            conv_bn(hidden, hidden, 3, stride, groups=hidden),
            conv_bn(hidden, out_ch, 1, relu=False),
        )
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class MobileNetV2(StagedNet):
    """`stem` (stride 2), `layer1..4` (the settings rows of each stage), then a `head` of the
    1x1 conv to 1280, the pool and the linear layer (the embedding is the pooled 1280)."""

    def __init__(self, num_classes: int, width_mult: float = 0.5, in_channels: int = 3) -> None:
        in_ch = int(32 * width_mult)
        stages: dict[str, nn.Module] = {"stem": conv_bn(in_channels, in_ch, stride=2)}
        for i, rows in enumerate(CIFAR_STAGES, start=1):
            units: list[nn.Module] = []
            for t, c, n, s in rows:
                out_ch = int(c * width_mult)
                for j in range(n):
                    units.append(InvertedResidual(in_ch, out_ch, s if j == 0 else 1, t))
                    in_ch = out_ch
            stages[f"layer{i}"] = nn.Sequential(*units)
        head = classifier(LAST_WIDTH, num_classes, conv_bn(in_ch, LAST_WIDTH, 1))
        super().__init__(stages, head)
