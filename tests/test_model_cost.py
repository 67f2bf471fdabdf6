"""What a model costs: multiply-adds counted against a hand count, weights' bytes, speed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdlab.deploy.speed import images_per_second
from kdlab.models import build_model, count_macs, weights_megabytes


def tiny() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2),  # 8x8 -> 4x4
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 6, 1, bias=False),  # pointwise
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 5),
    )


def test_macs_are_the_hand_count_of_convolutions_and_linear_layers():
    # conv: 6x4x4 outputs, each (4 / 2 groups) x 3x3 = 18 multiply-adds: 1728
    # pointwise: 6x4x4 outputs x 6 inputs: 576; linear: 96 x 5: 480 (BN, ReLU, biases: none)
    assert count_macs(tiny(), (4, 8, 8)) == 1728 + 576 + 480


def test_macs_scale_with_the_input_size_and_leave_the_model_as_it_was():
    model = build_model("resnet8", 10)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    small, large = count_macs(model, (3, 16, 16)), count_macs(model, (3, 32, 32))
    # Every conv scales with the pixels (x4); the final Linear (64 x 10) does not.
    assert large - 640 == 4 * (small - 640)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_weights_megabytes_count_parameters_and_buffers():
    model = tiny()
    params = (4 // 2) * 9 * 6 + 6 + 6 * 6 + 96 * 5 + 5 + 6 + 6  # convs, linear, BN affine
    buffers_bytes = 6 * 4 * 2 + 8  # BN running mean and var (fp32), num_batches_tracked (int64)
    assert weights_megabytes(model) == pytest.approx((params * 4 + buffers_bytes) / 1e6)


def test_images_per_second_is_positive_at_both_batch_sizes():
    model = tiny().eval()
    for batch in (1, 64):
        assert images_per_second(model, (4, 8, 8), batch, torch.device("cpu")) > 0
