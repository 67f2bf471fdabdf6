"""Named feature points: the top-level children of a model whose outputs are feature maps.

FitNets' hint and guided layers, and the prefix its stage one trains, are chosen by these
names. kdlab networks declare `feature_points` and `default_feature_point` (timm models:
the modules of timm's `feature_info`, possibly nested such as `stages.1`); for any other
model (torchvision) they are the top-level children before the pooling/classifier head.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from types import TracebackType
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from kdlab.errors import KdlabError
from kdlab.models.channels import input_channels
from kdlab.models.preact import PREACT, preact_modules

# Top-level children that start a torchvision classifier's head (resnet: avgpool/fc,
# vgg/efficientnet/convnext: avgpool/classifier, vit: heads, swin: head).
HEAD_NAMES = frozenset({"avgpool", "fc", "classifier", "head", "heads"})
# The pseudo-point of the pooled embedding: the input of the model's final Linear layer.
EMBEDDING = "embedding"
# The pseudo-point of the map the classifier pools: the input of the model's last global pool
# (a WRN's after its head's BN-ReLU, a MobileNetV2's or ShuffleNetV2's after the head's conv).
PREPOOL = "prepool"
# A model that declares no stage points has its last this many feature points as its stages.
FALLBACK_STAGES = 3


def middle_point(points: Sequence[str]) -> str:
    """The default point: the middle of the feature hierarchy (layer2 of a 3-stage ResNet)."""
    return points[len(points) // 2]


def feature_points(model: nn.Module) -> tuple[str, ...]:
    """The model's feature points in forward order."""
    declared = getattr(model, "feature_points", None)
    if declared is not None:
        return tuple(declared)
    points: list[str] = []
    for name, _ in model.named_children():
        if name in HEAD_NAMES:
            break
        points.append(name)
    return tuple(points)


def stage_points(model: nn.Module) -> tuple[str, ...]:
    """The stage outputs the references tap (f1..fK, after the stem f0) as the model declares
    them; for a model that declares none (torchvision, kdlab's plain students) the last three
    feature points (layer2..4 of a torchvision ResNet)."""
    declared = getattr(model, "stage_points", None)
    if declared is not None:
        return tuple(declared)
    return feature_points(model)[-FALLBACK_STAGES:]


def default_feature_point(model: nn.Module) -> str:
    """The point used when the config names none (the middle one unless the model says)."""
    declared = getattr(model, "default_feature_point", None)
    if declared is not None:
        return str(declared)
    points = feature_points(model)
    if not points:
        raise KdlabError(
            f"model {type(model).__name__} has no feature points (no top-level children before "
            "its classifier): pick a convolutional model for FitNets"
        )
    return middle_point(points)


def embedding_module(model: nn.Module) -> nn.Linear:
    """The model's final Linear layer, whose input is the pooled embedding (every zoo model's
    classifier ends in one)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise KdlabError(
            f"model {type(model).__name__} has no final Linear layer, so no pooled embedding: "
            "pick a model with a linear classifier"
        )
    return linears[-1]


def prepool_module(model: nn.Module) -> nn.AdaptiveAvgPool2d:
    """The model's last adaptive average pool, whose input is the map the classifier pools
    (RepDistiller's `feat[-2]` in every CIFAR family; every zoo head has one)."""
    pools = [m for m in model.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    if not pools:
        raise KdlabError(
            f"model {type(model).__name__} has no adaptive average pool before its classifier, "
            "so no pre-pool map: pick a convolutional model"
        )
    return pools[-1]


def _check_stage_point(model: nn.Module, name: str) -> None:
    points = feature_points(model)
    if name not in points:
        raise KdlabError(
            f"unknown feature point '{name}' for model {type(model).__name__}: "
            f"choose one of {', '.join(points)}"
        )


def check_feature_point(model: nn.Module, name: str) -> None:
    """Raise a KdlabError naming the valid points if `name` is not one FeatureTap records."""
    if name == EMBEDDING:
        embedding_module(model)
    elif name == PREPOOL:
        prepool_module(model)
    elif name.endswith(PREACT):
        preact_modules(model, name)
    else:
        _check_stage_point(model, name)


def modules_up_to(model: nn.Module, point: str) -> list[nn.Module]:
    """The modules that run up to and including `point`, in forward order: the top-level
    children before it; for a nested point (timm's `stages.1`) the children before its
    container, then the container's children up to it, and so on down."""
    _check_stage_point(model, point)
    return _prefix(model, point.split("."))


def _prefix(module: nn.Module, path: list[str]) -> list[nn.Module]:
    prefix: list[nn.Module] = []
    for name, child in module.named_children():
        if name == path[0]:
            return [*prefix, *(_prefix(child, path[1:]) if len(path) > 1 else [child])]
        prefix.append(child)
    return prefix


def hooked_child(model: nn.Module, point: str) -> str:
    """The top-level child whose forward records `point`: the point itself, or for
    `embedding`, `prepool` and `<stage>.preact` the child holding the hooked Linear, pool or
    ReLU (a WRN stage's pre-activation is the next stage's or the head's)."""
    if point == EMBEDDING:
        target: nn.Module = embedding_module(model)
    elif point == PREPOOL:
        target = prepool_module(model)
    elif point.endswith(PREACT):
        target, _ = preact_modules(model, point)
    else:
        return point.split(".")[0]
    return next(name for name, child in model.named_children() if target in child.modules())


class FeatureTap:
    """Records the outputs of named feature points during forward passes inside a `with`.

    >>> with FeatureTap(model, ["layer2"]) as tap:
    ...     logits = model(x)
    >>> tap.features["layer2"]  # the tensor itself, still in the autograd graph

    The point `embedding` records the input of the final Linear layer (the pooled features),
    `prepool` the input of the last global pool (the map the classifier pools);
    `<stage>.preact` a copy of the input of the ReLU after that stage (models.preact).
    """

    def __init__(self, model: nn.Module, points: Sequence[str]) -> None:
        for point in points:
            check_feature_point(model, point)
        self.model = model
        self.points = tuple(points)
        self.features: dict[str, Tensor] = {}
        self._handles: list[RemovableHandle] = []

    def _record(self, point: str, module: nn.Module, inputs: Any, output: Tensor) -> None:
        self.features[point] = output

    def _record_input(self, point: str, module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        self.features[point] = inputs[0]

    def _record_copy(self, point: str, module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        self.features[point] = inputs[0].clone()  # the ReLU is in place: keep what it gets

    def _register(self, point: str) -> RemovableHandle:
        """The hook that records `point`."""
        if point == EMBEDDING:  # a pre-hook: the final Linear's input
            linear = embedding_module(self.model)
            return linear.register_forward_pre_hook(partial(self._record_input, point))
        if point == PREPOOL:  # a pre-hook: the last global pool's input
            pool = prepool_module(self.model)
            return pool.register_forward_pre_hook(partial(self._record_input, point))
        if point.endswith(PREACT):  # a pre-hook: the input of the ReLU after the stage
            relu, _ = preact_modules(self.model, point)
            return relu.register_forward_pre_hook(partial(self._record_copy, point))
        child = self.model.get_submodule(point)
        return child.register_forward_hook(partial(self._record, point))

    def __enter__(self) -> FeatureTap:
        self.features = {}
        self._handles = [self._register(point) for point in self.points]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def dummy_forward(model: nn.Module, image_size: int = 32) -> None:
    """One forward of a zero image through `model` (as many channels as its first conv
    takes), in eval mode without grad on its own device; every module's mode is restored."""
    modes = {module: module.training for module in model.modules()}
    param = next(model.parameters())
    shape = (1, input_channels(model), image_size, image_size)
    x = torch.zeros(shape, device=param.device, dtype=param.dtype)
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for module, training in modes.items():
            module.training = training


def tapped_shapes(
    model: nn.Module, points: Sequence[str], image_size: int = 32
) -> dict[str, tuple[int, ...]]:
    """The shape (without the batch) of each point's output for square inputs, found by one
    `dummy_forward`."""
    with FeatureTap(model, points) as tap:
        dummy_forward(model, image_size)
    return {
        point: tuple(out.shape[1:]) if isinstance(out, Tensor) else (type(out).__name__,)
        for point, out in tap.features.items()
    }


def feature_shape(model: nn.Module, point: str, image_size: int = 32) -> torch.Size:
    """(C, H, W) of `point` for square inputs, found by one dummy forward (sizes regressors)."""
    got = tapped_shapes(model, [point], image_size)[point]
    if len(got) != 3 or isinstance(got[0], str):
        raise KdlabError(
            f"feature point '{point}' of model {type(model).__name__} gives {got}, not an "
            "(N, C, H, W) map: choose a convolutional stage"
        )
    return torch.Size(got)
