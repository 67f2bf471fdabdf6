"""Every model `model=NAME` can build, listed in one place, and how to build and describe them.

Code outside kdlab adds its own with `register_model` (a plugin: see kdlab.runs.plugins); a
registered model is a `model=` choice like a built-in one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from kdlab.errors import KdlabError, check_new_name
from kdlab.models.features import default_feature_point, feature_points
from kdlab.models.mobilenetv2 import MobileNetV2
from kdlab.models.plain import (
    CNN_STUDENT,
    FITNET_STUDENT,
    VGG8,
    VGG11,
    VGG13,
    VGG16,
    VGG19,
    ConvBlock,
    PlainCNN,
)
from kdlab.models.pretrained import head_names
from kdlab.models.published_sizes import REFERENCE_SIZES
from kdlab.models.resnet import CifarResNet, cifar_resnet, cifar_resnet50
from kdlab.models.shufflenetv1 import ShuffleNetV1
from kdlab.models.shufflenetv2 import ShuffleNetV2
from kdlab.models.timm_models import INSTALL, timm_model
from kdlab.models.torchvision_models import torchvision_model
from kdlab.models.wrn import WideResNet


@dataclass(frozen=True)
class ModelBuilder:
    """Builds one registered model: `(num_classes, in_channels, **options) -> nn.Module`."""

    make: Callable[..., nn.Module]
    notes: str
    options: tuple[str, ...] = ()  # the config keys (model.KEY) it accepts besides `arch`
    # Of `options`, those choosing pretrained weights: left out when the weights come from a
    # checkpoint (a teacher, a resumed run); with them comes model.freeze_epochs.
    weights: tuple[str, ...] = ()

    def __call__(self, num_classes: int, in_channels: int = 3, **kwargs: Any) -> nn.Module:
        return self.make(num_classes, in_channels=in_channels, **kwargs)

    def option_defaults(self) -> dict[str, Any]:
        """Each option's default, read from the builder's own signature (stated once there)."""
        parameters = inspect.signature(self.make).parameters
        return {key: parameters[key].default for key in self.options}


def _resnet(depth: int) -> ModelBuilder:
    return ModelBuilder(partial(cifar_resnet, depth=depth), f"CIFAR ResNet-{depth} (16/32/64)")


def _wrn(depth: int, widen: int) -> ModelBuilder:
    return ModelBuilder(
        partial(WideResNet, depth=depth, widen=widen), f"Wide ResNet {depth}-{widen}"
    )


def _vgg(depth: int, blocks: tuple[ConvBlock, ...]) -> ModelBuilder:
    return ModelBuilder(
        partial(PlainCNN, blocks=blocks, has_stem=True), f"CIFAR VGG-{depth} with BN"
    )


MODELS: dict[str, ModelBuilder] = {
    "resnet_teacher": ModelBuilder(
        partial(CifarResNet, blocks=(2, 3, 4), widths=(32, 32, 64, 128)),
        "notes 1-2 teacher: CIFAR ResNet 32/64/128, 2-3-4 blocks",
    ),
    "cnn_student": ModelBuilder(
        partial(PlainCNN, blocks=CNN_STUDENT), "note 1 baseline/student: 6 conv-BN-ReLU"
    ),
    "fitnet_student": ModelBuilder(
        partial(PlainCNN, blocks=FITNET_STUDENT), "note 2 baseline/student: 9 thin conv-BN-ReLU"
    ),
    "resnet8": _resnet(8),
    "resnet14": _resnet(14),
    "resnet20": _resnet(20),
    "resnet32": _resnet(32),
    "resnet44": _resnet(44),
    "resnet56": _resnet(56),
    "resnet110": _resnet(110),
    "resnet8x4": ModelBuilder(
        partial(cifar_resnet, depth=8, widths=(32, 64, 128, 256)), "CIFAR ResNet-8, 4x wide"
    ),
    "resnet32x4": ModelBuilder(
        partial(cifar_resnet, depth=32, widths=(32, 64, 128, 256)), "CIFAR ResNet-32, 4x wide"
    ),
    "resnet50": ModelBuilder(cifar_resnet50, "CIFAR ResNet-50: 3-4-6-3 bottlenecks, 3x3 stem"),
    "wrn_16_1": _wrn(16, 1),
    "wrn_16_2": _wrn(16, 2),
    "wrn_40_1": _wrn(40, 1),
    "wrn_40_2": _wrn(40, 2),
    "vgg8": _vgg(8, VGG8),
    "vgg11": _vgg(11, VGG11),
    "vgg13": _vgg(13, VGG13),
    "vgg16": _vgg(16, VGG16),
    "vgg19": _vgg(19, VGG19),
    "mobilenetv2": ModelBuilder(MobileNetV2, "MobileNetV2 half width (CRD mobile_half)"),
    "shufflenetv1": ModelBuilder(ShuffleNetV1, "ShuffleNet V1, 3 groups, CIFAR stem"),
    "shufflenetv2": ModelBuilder(ShuffleNetV2, "ShuffleNetV2 1.0x, CIFAR stem"),
    "torchvision": ModelBuilder(
        torchvision_model,
        "any torchvision classifier: model.name=NAME (shown: resnet18)",
        options=("name", "weights"),
        weights=("weights",),
    ),
    "timm": ModelBuilder(
        timm_model,
        f"any timm model: model.name=NAME (shown: resnet18), {INSTALL}",
        options=("name", "pretrained", "pretrained_file"),
        weights=("pretrained", "pretrained_file"),
    ),
}


def register_model(
    name: str,
    builder: ModelBuilder | Callable[..., nn.Module],
    notes: str = "",
    options: tuple[str, ...] = (),
) -> ModelBuilder:
    """Make `model=name` build a model from outside kdlab, like a built-in one: the `model=`
    config group, `--help`, the checks, run summaries and `kdlab models` list it.

    `builder`: a `ModelBuilder`, or a function `(num_classes, in_channels=3, **options) ->
    nn.Module` with `notes` (its line in `kdlab models`) and `options` (the model.KEY
    settings it takes; their defaults are its keyword defaults). Its network declares
    `feature_points` (and may declare `default_feature_point`, `stage_points`), or its
    top-level children before the head are its feature points. A taken name is an error.
    """
    check_new_name("model", "model", name, MODELS)
    if not isinstance(builder, ModelBuilder):
        builder = ModelBuilder(builder, notes or f"{name} (registered)", options)
    MODELS[name] = builder
    return builder


# model.freeze_epochs=N (models with pretrained weights): only the new head trains for the
# first N epochs (the backbone frozen, BatchNorm statistics too), then the whole model.
FREEZE = "freeze_epochs"


@dataclass(frozen=True)
class ModelInfo:
    """One row of `kdlab models`."""

    name: str
    params: int | None  # at 10 classes
    params_100: int | None  # at 100 classes, the references' setting
    published: float | None  # millions at 100 classes, as the references print it
    feature_points: list[str]
    default_feature_point: str
    notes: str


def model_names() -> list[str]:
    return list(MODELS)


def count_params(model: nn.Module) -> int:
    """All parameters, trainable or frozen (buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def build_model(name: str, num_classes: int, /, in_channels: int = 3, **kwargs: Any) -> nn.Module:
    """Build registered model `name` for `in_channels`-channel images with a `num_classes`-way
    classifier, on the CPU."""
    builder = MODELS.get(name)
    if builder is None:
        raise KdlabError(f"unknown model '{name}': choose one of {', '.join(MODELS)} (model=NAME)")
    unknown = [key for key in kwargs if key not in builder.options]
    if unknown:
        accepted = ", ".join(f"model.{key}" for key in builder.options) or "no options"
        raise KdlabError(
            f"model={name} does not take {', '.join(f'model.{key}' for key in unknown)}: "
            f"it accepts {accepted}; remove the override"
        )
    if num_classes < 1:
        raise KdlabError(f"a model needs at least 1 class, got num_classes={num_classes}")
    if in_channels < 1:
        raise KdlabError(f"a model needs at least 1 input channel, got in_channels={in_channels}")
    return builder(num_classes, in_channels, **kwargs)


def group_options() -> dict[str, dict[str, Any]]:
    """The `model=` config group: `{"arch": NAME, **options}` for every registered model."""
    return {
        name: {"arch": name, **b.option_defaults(), **({FREEZE: 0} if b.weights else {})}
        for name, b in MODELS.items()
    }


def build_options(model_cfg: Mapping[str, Any], pretrained: bool = True) -> dict[str, Any]:
    """The builder's keyword arguments in a `model` node (all but `arch` and freeze_epochs);
    `pretrained=False` leaves the weights out too: a rebuilt model's come from a checkpoint."""
    builder = MODELS.get(str(model_cfg.get("arch")))
    drop = {"arch"}
    if builder is not None and builder.weights:
        drop |= {FREEZE} if pretrained else {FREEZE, *builder.weights}
    return {k: v for k, v in model_cfg.items() if k not in drop}


def freeze_epochs(model_cfg: Mapping[str, Any]) -> int:
    """model.freeze_epochs: the epochs only the head trains (0: none, or not a pretrained
    model)."""
    return int(model_cfg.get(FREEZE, 0))


def head_parameters(model_cfg: Mapping[str, Any], num_classes: int, in_channels: int) -> set[str]:
    """The names of the model's classifier-head tensors (those sized by the classes)."""
    arch, options = str(model_cfg["arch"]), build_options(model_cfg, pretrained=False)
    return head_names(lambda n: build_model(arch, n, in_channels, **options), num_classes)


def check_freeze(model_cfg: Mapping[str, Any]) -> None:
    """model.freeze_epochs is a count >= 0, and > 0 only with pretrained weights."""
    builder = MODELS.get(str(model_cfg.get("arch")))
    value = model_cfg.get(FREEZE, 0)
    if builder is None or not builder.weights or value == 0:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise KdlabError(f"model.freeze_epochs must be an integer >= 0, got {value}")
    defaults = builder.option_defaults()
    if all(model_cfg.get(key) == defaults[key] for key in builder.weights):
        weights = " or ".join(f"model.{key}=..." for key in builder.weights)
        raise KdlabError(
            f"model.freeze_epochs={value} freezes a pretrained backbone, but no pretrained "
            f"weights are set: set {weights}, or drop model.freeze_epochs"
        )


def check_model_choice(model_cfg: Mapping[str, Any], pretrained: bool = True) -> None:
    """The `model` node names a registered model with options it accepts (checked by building
    it on the meta device: no memory, no initialisation cost); `pretrained=False` (a resumed
    run, whose weights are its checkpoint's) leaves the pretrained weights unchecked."""
    arch = model_cfg.get("arch")
    if arch is None:
        raise KdlabError("model has no 'arch': pick one with model=NAME (see kdlab models)")
    check_freeze(model_cfg)
    with torch.device("meta"):  # pretrained weights: named, present (or fetched) and fitting
        build_model(str(arch), 10, **build_options(model_cfg, pretrained))


def model_label(model_cfg: Mapping[str, Any]) -> str:
    """`resnet_teacher`, or `torchvision:resnet18` / `timm:resnet18` for models by name."""
    if "name" in model_cfg:
        return f"{model_cfg['arch']}:{model_cfg['name']}"
    return str(model_cfg["arch"])


def describe_models() -> list[ModelInfo]:
    """Every registered model at 10 and 100 classes, built on the meta device (no memory, no
    init cost), beside the references' published size."""
    infos = []
    for name, builder in MODELS.items():
        try:
            with torch.device("meta"):
                model, wide = builder(10), builder(100)
        except KdlabError as error:  # an optional extra that is not installed (timm)
            infos.append(ModelInfo(name, None, None, None, [], "", f"{builder.notes}; {error}"))
            continue
        reference = REFERENCE_SIZES.get(name)
        infos.append(
            ModelInfo(
                name=name,
                params=count_params(model),
                params_100=count_params(wide),
                published=reference.published if reference else None,
                feature_points=list(feature_points(model)),
                default_feature_point=default_feature_point(model),
                notes=builder.notes,
            )
        )
    return infos
