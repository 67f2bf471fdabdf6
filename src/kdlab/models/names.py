"""The built-in models' names: the options of `model=` (and `teacher.model=`) that
kdlab.models.registry registers.

Known without importing a model (or torch), so the CLI's first look at the overrides
(kdlab.runs.screen) can refuse an unknown `model=` in a fraction of a second;
`tests/test_registries.py` checks the names against the registry.
"""

BUILT_IN = (
    "resnet_teacher", "cnn_student", "fitnet_student", "resnet8", "resnet14", "resnet20",
    "resnet32", "resnet44", "resnet56", "resnet110", "resnet8x4", "resnet32x4", "resnet50",
    "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2", "vgg8", "vgg11", "vgg13", "vgg16", "vgg19",
    "mobilenetv2", "shufflenetv1", "shufflenetv2", "torchvision", "timm",
)  # fmt: skip
