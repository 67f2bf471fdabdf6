"""Wide ResNets for CIFAR (Zagoruyko & Komodakis 2016): pre-activation blocks, widened k times."""

from __future__ import annotations

from torch import Tensor, nn

from kdlab.models.blocks import classifier, make_stage
from kdlab.models.staged import StagedNet


class PreActBlock(nn.Module):
    """(BN-ReLU-3x3 conv) twice; on a shape change the shortcut is a 1x1 conv of the activation."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.preact = nn.Sequential(nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True))
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, stride, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
        )
        same_shape = stride == 1 and in_ch == out_ch
        self.shortcut = None if same_shape else nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        activated = self.preact(x)
        skip = x if self.shortcut is None else self.shortcut(activated)
        return self.body(activated) + skip


class WideResNet(StagedNet):
    """WRN-`depth`-`widen`: `stem` conv, `layer1..3` of (depth-4)/6 blocks, BN-ReLU `head`."""

    def __init__(self, num_classes: int, depth: int, widen: int, in_channels: int = 3) -> None:
        n = (depth - 4) // 6
        widths = (16 * widen, 32 * widen, 64 * widen)
        stem = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        stages: dict[str, nn.Module] = {"stem": stem}
        in_ch = 16
        for i, width in enumerate(widths, start=1):
            stages[f"layer{i}"] = make_stage(
                PreActBlock, in_ch, width, n, stride=1 if i == 1 else 2
            )
            in_ch = width
        head = classifier(in_ch, num_classes, nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True))
        super().__init__(stages, head)
        # the BN-ReLU after each stage: the next stage's first pre-activation, the head's
        after = ["layer2.0.preact", "layer3.0.preact", "head"]
        self.preact_taps = {
            f"layer{i}": (f"{path}.1", f"{path}.0") for i, path in enumerate(after, start=1)
        }
