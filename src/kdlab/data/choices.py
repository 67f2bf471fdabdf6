"""What `data.augment=auto` and `data.normalize=auto` pick for a run, and the image geometry
each augmentation needs: the rules docs/data.md states, in one place.

- augment auto: `cifar` (pad-4 crop + flip, no flips for digits and characters) for every
  data set of a fixed size (32 px, 28 px) and for the resized ones (image folders, the
  synthetic set: DatasetSpec.image_size None) below IMAGENET_MIN_SIZE px; `imagenet`
  (random-resized crop + flip; resize + centre crop for evaluation) for the resized ones at
  IMAGENET_MIN_SIZE px or more.
- normalize auto: ImageNet's statistics when a model of the run starts from pretrained
  weights (they were trained on inputs normalised so), else the data set's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kdlab.data.augment import Augmentation, PadCropFlip
from kdlab.data.registry import DatasetSpec, channels_of, data_settings
from kdlab.data.resized_crop import ResizedCropFlip, eval_resize
from kdlab.data.settings import DataConfig, augment_choice
from kdlab.errors import KdlabError

IMAGENET_MIN_SIZE = 96  # resized data sets from this side length up train ImageNet-style
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def augment_mode(settings: DataConfig, spec: DatasetSpec) -> str:
    """data.augment resolved: cifar, imagenet or none."""
    choice = augment_choice(settings.augment)
    if choice != "auto":
        return choice
    resized = spec.image_size is None and settings.image_size >= IMAGENET_MIN_SIZE
    return "imagenet" if resized else "cifar"


def train_augmentation(mode: str, spec: DatasetSpec, size: int) -> Augmentation | None:
    """The training views of `mode` for images served at `size` px."""
    if mode == "cifar" and spec.augment_pad is not None:
        return PadCropFlip(spec.augment_pad, spec.flips)
    if mode == "imagenet":
        return ResizedCropFlip(size, spec.flips)
    return None


def stored_sides(mode: str, size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(resize, crop) of the training and of the evaluation images as stored: `size` both
    for cifar and none; for imagenet the training images keep the square of side
    size / 0.875 (the crops are cut from it) and evaluation is Resize(size / 0.875) +
    CenterCrop(size), torchvision's ImageNet evaluation."""
    if mode != "imagenet":
        return (size, size), (size, size)
    side = eval_resize(size)
    return (side, side), (side, size)


def pretrained(model: Mapping[str, Any] | None) -> bool:
    """Whether a model config starts from pretrained weights (`weights` set, or
    `pretrained=true`: the torchvision and timm models' keys; absent keys read as no)."""
    if not model:
        return False
    return bool(model.get("weights")) or model.get("pretrained") is True


def normalization(settings: DataConfig, use_imagenet: bool) -> str:
    """data.normalize resolved: `imagenet` or `dataset` (given data.mean/std count as the data
    set's own); `use_imagenet` is what auto picks for RGB images."""
    choice, given, rgb = settings.normalize, settings.mean is not None, channels_of(settings) == 3
    if choice == "auto":
        return "imagenet" if use_imagenet and rgb and not given else "dataset"
    if choice == "imagenet" and given:
        raise KdlabError(
            "data.normalize=imagenet and data.mean/std both set the normalisation: drop one"
        )
    if choice == "imagenet" and not rgb:
        raise KdlabError(
            "ImageNet statistics are for RGB images: use data.normalize=dataset with "
            "data.channels=1"
        )
    return choice


def imagenet_inputs(
    model: Mapping[str, Any] | None, teacher_config: Mapping[str, Any] | None
) -> bool:
    """What data.normalize=auto follows: the teacher's normalisation where there is one (it
    sees the student's batches), else whether the model (config) is pretrained."""
    if teacher_config is not None:
        return run_normalization(teacher_config) == "imagenet"
    return pretrained(model)


def run_normalization(config: Mapping[str, Any]) -> str:
    """The normalisation a finished run's resolved config trained with (runs from before
    data.normalize existed used the data set's statistics)."""
    data = dict(config.get("data") or {})
    data.setdefault("normalize", "dataset")
    return normalization(data_settings(data), pretrained(config.get("model")))
