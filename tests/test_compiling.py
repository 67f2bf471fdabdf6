"""`trainer.compile=true` falls back to eager execution where compiling fails."""

from __future__ import annotations

import logging

import torch
from torch import nn

from kdlab.engine.compiling import CompiledOrEager


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())


def test_a_failing_compiler_falls_back_to_eager_once(caplog):
    attempts = []

    def broken_backend(graph, example_inputs):
        attempts.append(1)
        raise RuntimeError("no C++ compiler here")

    model = small_model()
    step = CompiledOrEager(model, backend=broken_backend)
    x = torch.randn(2, 3, 8, 8)
    with caplog.at_level(logging.WARNING, logger="kdlab"):
        out = step(x)
        again = step(x)
    assert step.compile_failed
    assert len(attempts) == 1, "the compiler was retried after it failed"
    assert "torch.compile failed" in caplog.text and "training eagerly" in caplog.text
    model.eval()  # the same weights, eagerly, must give what the fallback gave (eval: no BN drift)
    assert torch.equal(CompiledOrEager(model, backend=broken_backend)(x), model(x))
    assert out.shape == again.shape == (2, 144)


def test_a_working_compiler_is_used_and_trains_the_same_parameters():
    model = small_model()
    step = CompiledOrEager(model, backend="eager")  # dynamo traces; no code generation
    assert {id(p) for p in step.parameters()} == {id(p) for p in model.parameters()}
    assert set(step.state_dict()) == {f"model.{k}" for k in model.state_dict()}
    x = torch.randn(2, 3, 8, 8)
    step(x).sum().backward()
    assert not step.compile_failed
    assert all(p.grad is not None for p in model.parameters())
