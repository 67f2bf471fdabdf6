"""What a model costs to keep and to run: its weights' bytes and its multiply-adds per image.

A student's accuracy means little without what it saves against its teacher; these are the
figures summary.json records and `kdlab report` shows beside the accuracies.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def weights_megabytes(model: nn.Module) -> float:
    """The bytes (in MB, 10^6) of the model's state_dict tensors: what a weights-only file
    of it holds (a training checkpoint adds the optimizer's state on top)."""
    tensors = model.state_dict().values()
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor)) / 1e6


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass on one input of `input_shape` (C, H, W): those of the
    convolutions and matrix products (Linear layers, attention), counted by torch's
    FlopCounterMode (FLOPs / 2); BatchNorm, activations and pooling are not counted, as usual.

    Runs one image through the model in eval mode on its own device (and restores its mode),
    so BatchNorm statistics are left untouched.
    """
    parameter = next(iter(model.parameters()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    training = model.training
    model.eval()
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(torch.zeros((1, *input_shape), device=device))
    finally:
        model.train(training)
    return int(counter.get_total_flops()) // 2
