"""Building blocks shared by the kdlab networks: conv-BN(-ReLU), stages of blocks, the head."""

from __future__ import annotations

from typing import Protocol

from torch import nn


def conv_bn(
    in_ch: int,
    out_ch: int,
    kernel_size: int = 3,
    stride: int = 1,
    groups: int = 1,
    relu: bool = True,
) -> nn.Sequential:
    """Conv (no bias: the BN shifts) -> BatchNorm -> optional ReLU, 'same' padding."""
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_ch, out_ch, kernel_size, stride, padding=kernel_size // 2, groups=groups, bias=False
        ),
        nn.BatchNorm2d(out_ch),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BlockFactory(Protocol):
    """A residual-style block class: `(in_ch, out_ch, stride) -> nn.Module`."""

    def __call__(self, in_ch: int, out_ch: int, stride: int) -> nn.Module: ...


def make_stage(block: BlockFactory, in_ch: int, out_ch: int, n: int, stride: int) -> nn.Sequential:
    """`n` blocks at one width; only the first changes the width and resolution."""
    return nn.Sequential(
        block(in_ch, out_ch, stride), *(block(out_ch, out_ch, 1) for _ in range(n - 1))
    )


def classifier(in_ch: int, num_classes: int, *before: nn.Module) -> nn.Sequential:
    """[before ->] global average pool -> linear; adaptive pooling accepts any input size."""
    return nn.Sequential(
        *before, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_ch, num_classes)
    )
