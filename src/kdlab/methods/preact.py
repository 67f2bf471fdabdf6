"""Pre-activation taps: the value a feature point's final ReLU receives (AB's features).

RepDistiller's `preact=True` returns each ResNet stage's output before its last ReLU. Here a
point whose output is the output of its last `nn.ReLU` module yields that ReLU's input
(found once, by a dummy forward); a point whose output comes from no ReLU (a pre-activation
WRN stage, a linear bottleneck) is already a pre-activation and yields its output. (For WRN,
RepDistiller applies the next block's BatchNorm first; kdlab taps the raw stage output.)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from kdlab.models import FeatureTap
from kdlab.models.features import dummy_forward


def _last_relu(module: nn.Module) -> nn.ReLU | None:
    relus = [m for m in module.modules() if isinstance(m, nn.ReLU)]
    return relus[-1] if relus else None


def output_relus(
    model: nn.Module, points: Sequence[str], image_size: int
) -> dict[str, nn.ReLU | None]:
    """Each point's final ReLU (the last ReLU module inside it, when its output is the point's
    output), or None; one dummy forward decides."""
    candidates = {p: _last_relu(model.get_submodule(p)) for p in points}
    seen: dict[tuple[str, str], Tensor] = {}

    def record(key: tuple[str, str], module: nn.Module, inputs: Any, output: Tensor) -> None:
        seen[key] = output

    handles: list[RemovableHandle] = []
    for point, relu in candidates.items():
        if relu is not None:
            handles.append(relu.register_forward_hook(partial(record, (point, "relu"))))
            point_module = model.get_submodule(point)
            handles.append(point_module.register_forward_hook(partial(record, (point, "out"))))
    try:
        dummy_forward(model, image_size)
    finally:
        for handle in handles:
            handle.remove()
    ends = {p: (p, "relu") in seen and seen[p, "relu"] is seen.get((p, "out")) for p in points}
    return {p: relu if ends[p] else None for p, relu in candidates.items()}


class PreActTap(FeatureTap):
    """A FeatureTap recording, for each point with a final ReLU (`relus`), that ReLU's input:
    a copy, taken before an in-place ReLU overwrites it, that stays in the autograd graph."""

    def __init__(
        self, model: nn.Module, points: Sequence[str], relus: dict[str, nn.ReLU | None]
    ) -> None:
        super().__init__(model, points)
        self.relus = relus

    def _record_preact(self, point: str, module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        self.features[point] = inputs[0].clone()  # the last call of the ReLU wins

    def _register(self, point: str) -> RemovableHandle:
        relu = self.relus.get(point)
        if relu is None:
            return super()._register(point)
        return relu.register_forward_pre_hook(partial(self._record_preact, point))
