"""The shape every kdlab network shares: named stages run in order, then a `head`.

Keeping the stages as top-level children is what lets `FeatureTap` hook them by name and
FitNets train or freeze a prefix of them (`modules_up_to`).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from kdlab.models.features import middle_point


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convs (fan_out, ReLU gain), BN as the identity; Linear keeps torch's.
    A model on the meta device (the pre-flight's check) holds no values to set, and torch's
    normal_ on a meta tensor imports torch._dynamo: 1.4 s of every command's start."""
    for m in model.modules():
        if any(p.is_meta for p in m.parameters(recurse=False)):
            continue
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class StagedNet(nn.Sequential):
    """Stages (the feature points, each giving an N,C,H,W map) followed by a classifier `head`.

    With `has_stem` the first stage is the references' stem (f0) and the others are the stage
    outputs they tap (f1..fK, `stage_points`); without it (kdlab's own plain students, which no
    reference taps) the methods fall back to the last three points.
    """

    feature_points: tuple[str, ...]
    stage_points: tuple[str, ...] | None
    default_feature_point: str

    def __init__(
        self, stages: dict[str, nn.Module], head: nn.Module, has_stem: bool = True
    ) -> None:
        super().__init__(OrderedDict([*stages.items(), ("head", head)]))
        self.feature_points = tuple(stages)
        self.stage_points = self.feature_points[1:] if has_stem else None
        self.default_feature_point = middle_point(self.feature_points)
        init_weights(self)
