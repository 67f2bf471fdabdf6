"""The CRD zoo's sizes at 100 classes, from the references, printed by `kdlab models` beside
ours and checked by the tests.

`published`: the figure (millions, two decimals) the CIFAR-100 tables of the CRD /
RepDistiller zoo print (as issue 17 lists them); None where no table gives one.
`repdistiller`: the exact parameter count of RepDistiller's own module (HobbitLong/RepDistiller
@b84f547, `models/__init__.py`'s `model_dict`) built with num_classes=100, counted by us; the
published figures are these rounded. kdlab's VGGs have 64 + 128 + ... fewer (one per conv
output channel): RepDistiller's convs carry biases that the BatchNorm after them cancels.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = "RepDistiller@b84f547 models/, CIFAR-100 (100 classes)"


@dataclass(frozen=True)
class ReferenceSize:
    published: float | None  # millions of parameters, as printed
    repdistiller: int  # RepDistiller's module, counted
    name: str  # its name in RepDistiller's model_dict


REFERENCE_SIZES: dict[str, ReferenceSize] = {
    "resnet8": ReferenceSize(None, 83_892, "resnet8"),
    "resnet14": ReferenceSize(None, 181_108, "resnet14"),
    "resnet20": ReferenceSize(0.28, 278_324, "resnet20"),
    "resnet32": ReferenceSize(0.47, 472_756, "resnet32"),
    "resnet44": ReferenceSize(None, 667_188, "resnet44"),
    "resnet56": ReferenceSize(0.86, 861_620, "resnet56"),
    "resnet110": ReferenceSize(1.74, 1_736_564, "resnet110"),
    "resnet8x4": ReferenceSize(1.23, 1_233_540, "resnet8x4"),
    "resnet32x4": ReferenceSize(7.43, 7_433_860, "resnet32x4"),
    "resnet50": ReferenceSize(23.71, 23_705_252, "ResNet50"),
    "wrn_16_1": ReferenceSize(None, 180_916, "wrn_16_1"),
    "wrn_16_2": ReferenceSize(0.70, 703_284, "wrn_16_2"),
    "wrn_40_1": ReferenceSize(0.57, 569_780, "wrn_40_1"),
    "wrn_40_2": ReferenceSize(2.26, 2_255_156, "wrn_40_2"),
    "vgg8": ReferenceSize(3.96, 3_965_028, "vgg8"),
    "vgg11": ReferenceSize(None, 9_277_284, "vgg11"),
    "vgg13": ReferenceSize(9.46, 9_462_180, "vgg13"),
    "vgg16": ReferenceSize(None, 14_774_436, "vgg16"),
    "vgg19": ReferenceSize(None, 20_086_692, "vgg19"),
    "mobilenetv2": ReferenceSize(0.81, 812_836, "MobileNetV2"),
    "shufflenetv1": ReferenceSize(0.95, 949_258, "ShuffleV1"),
    "shufflenetv2": ReferenceSize(1.36, 1_355_528, "ShuffleV2"),
}
