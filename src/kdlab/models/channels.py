"""A model's input channels: read from, or rebuilt into, its first convolution.

kdlab's own networks take `in_channels` in their stem; a torchvision classifier is built for
RGB and gets its first Conv2d rebuilt, so greyscale images train without copying them to 3.
"""

from __future__ import annotations

import torch
from torch import nn

from kdlab.errors import KdlabError


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The first Conv2d in registration order (the input's for every torchvision classifier)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise KdlabError(
        f"model {type(model).__name__} has no Conv2d to read or set its input channels from: "
        "pick a convolutional model"
    )


def input_channels(model: nn.Module) -> int:
    return first_conv(model)[1].in_channels


def with_input_channels(model: nn.Module, in_channels: int) -> nn.Module:
    """`model` with its first conv taking `in_channels`, all its other settings kept.

    The new filters are the old ones averaged over the input channels (times old/new), so at
    initialisation an image copied into every channel gives exactly the logits the original
    model gives for it copied into its channels: the model's own init scale carries over.
    """
    name, conv = first_conv(model)
    if conv.in_channels == in_channels:
        return model
    if conv.groups != 1:
        raise KdlabError(
            f"cannot set the input channels of {type(model).__name__}: its first conv "
            f"'{name}' is grouped ({conv.groups} groups); use 3-channel images"
        )
    rebuilt = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        mean = conv.weight.mean(1, keepdim=True) * (conv.in_channels / in_channels)
        rebuilt.weight.copy_(mean.expand_as(rebuilt.weight))
        if conv.bias is not None and rebuilt.bias is not None:
            rebuilt.bias.copy_(conv.bias)
    model.set_submodule(name, rebuilt)
    return model
