"""Any torchvision classification model by name, randomly initialised (weights never load)."""

from __future__ import annotations

import difflib

from torch import nn

from kdlab.errors import KdlabError
from kdlab.models.channels import with_input_channels

EXAMPLES = ("resnet18", "resnet50", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny")


def torchvision_model(num_classes: int, name: str = "resnet18", in_channels: int = 3) -> nn.Module:
    """`torchvision.models.get_model(name, weights=None, num_classes=...)`, its first conv
    rebuilt for `in_channels` other than RGB's 3."""
    import torchvision  # only paid for when a torchvision model is asked for

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        close = difflib.get_close_matches(name, available, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise KdlabError(
            f"unknown torchvision model '{name}'{hint}: choose a classifier such as "
            f"{', '.join(EXAMPLES)}; torchvision.models.list_models(module=torchvision.models) "
            "lists them all (model.name=NAME)"
        )
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    return with_input_channels(model, in_channels)
