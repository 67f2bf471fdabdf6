"""optim=dot: the optimiser against an element-wise float64 re-derivation of DOT's update
(Zhao et al. ICCV 2023), the engine's split of a method's loss into its task and
distillation gradients, a resume that continues both momenta bit for bit (its CLI run from
the logit cache is in test_mlkd.py, on the same teacher; its refusals are rows of the
bad-input catalogue)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdlab.data import DataBundle
from kdlab.data.device_loader import DeviceLoader
from kdlab.data.normalize import Normalizer
from kdlab.data.schedule import EvalSchedule, TrainSchedule
from kdlab.engine.checkpoint import Checkpoint
from kdlab.engine.dot import DOT
from kdlab.engine.execution import autocast
from kdlab.engine.optim import build_optimizer
from kdlab.engine.run_logger import NullLogger
from kdlab.engine.stage import Stage
from kdlab.engine.trainer import RunPlace, Trainer
from kdlab.methods.registry import build_method
from kdlab.methods.teacher import FrozenTeacher
from kdlab.models import build_model
from kdlab.runs.preflight import compose_config

CPU = torch.device("cpu")


def reference_dot(params, steps, lr, momentum, delta, wd):
    """DOT's update, one float at a time (the paper's Algorithm 1 as mdistiller's dot.py
    runs it, where momentum - delta = 0 keeps no task momentum). `params`: name -> list of
    floats; `steps`: per step, name -> (task gradient or None, distillation gradient or None)
    as lists. Returns the parameters after the steps."""
    mu_task, mu_kd = momentum - delta, momentum + delta
    mu_mid = (mu_kd + mu_task) / 2
    p = {k: list(v) for k, v in params.items()}
    v_task: dict[str, list[float]] = {}
    v_kd: dict[str, list[float]] = {}
    for grads in steps:
        for name, (g_t, g_kd) in grads.items():  # every task update first
            if g_t is None:
                continue
            d = [g + wd * x for g, x in zip(g_t, p[name], strict=True)]
            mu = mu_task if g_kd is not None else mu_mid
            if name not in v_task or mu_task == 0:  # mu_task 0: no task momentum at all
                v_task[name] = d
            else:
                v_task[name] = [mu * v + x for v, x in zip(v_task[name], d, strict=True)]
            p[name] = [x - lr * v for x, v in zip(p[name], v_task[name], strict=True)]
        for name, (g_t, g_kd) in grads.items():
            if g_kd is None:
                continue
            if name not in v_kd:
                v_kd[name] = list(g_kd)
            elif g_t is not None:
                v_kd[name] = [mu_kd * v + g for v, g in zip(v_kd[name], g_kd, strict=True)]
            else:
                d = [g + wd * x for g, x in zip(g_kd, p[name], strict=True)]
                v_kd[name] = [mu_mid * v + x for v, x in zip(v_kd[name], d, strict=True)]
            p[name] = [x - lr * v for x, v in zip(p[name], v_kd[name], strict=True)]
    return p


# Which gradients each parameter gets: both, the task's only, the distillation's only, both
# but the task's only from step 3 (a branch change), none.
REACHED = {"both": (True, True), "task": (True, False), "kd": (False, True), "none": (False, False)}


@pytest.mark.parametrize(
    ("momentum", "delta", "wd"),
    [(0.9, 0.075, 5e-4), (0.9, 0.0, 5e-2), (0.5, 0.5, 1e-3), (0.8, 0.15, 0.0)],
)
def test_dot_steps_as_the_elementwise_formula(momentum, delta, wd):
    g = torch.Generator().manual_seed(0)
    params = {name: torch.randn(5, generator=g, dtype=torch.float64) for name in REACHED}
    params["switch"] = torch.randn(5, generator=g, dtype=torch.float64)
    start = {k: v.tolist() for k, v in params.items()}
    tensors = {k: torch.nn.Parameter(v.clone()) for k, v in params.items()}
    optimizer = DOT([{"params": list(tensors.values()), "weight_decay": wd}], lr=0.1,
                    momentum=momentum, delta=delta)  # fmt: skip
    steps = []
    for step in range(6):
        grads = {}
        for name in tensors:
            task, kd = REACHED.get(name, (True, step < 3))
            grads[name] = tuple(
                torch.randn(5, generator=g, dtype=torch.float64) if on else None
                for on in (task, kd)
            )
        for name, tensor in tensors.items():  # the engine's order: distillation first
            tensor.grad = grads[name][1]
        optimizer.record_distillation()
        optimizer.zero_grad(set_to_none=True)
        for name, tensor in tensors.items():
            tensor.grad = grads[name][0]
        optimizer.step()
        steps.append({k: tuple(None if t is None else t.tolist() for t in v)
                      for k, v in grads.items()})  # fmt: skip
    expected = reference_dot(start, steps, 0.1, momentum, delta, wd)
    for name, tensor in tensors.items():
        assert tensor.tolist() == pytest.approx(expected[name], rel=1e-12, abs=1e-12), name
    assert tensors["none"].tolist() == start["none"]


def test_dot_without_delta_and_without_distillation_is_sgd_with_momentum():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(4, 3).double(), torch.nn.Linear(4, 3).double()
    b.load_state_dict(a.state_dict())
    dot = DOT(a.parameters(), lr=0.1, momentum=0.9, delta=0.0, weight_decay=1e-3)
    sgd = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for _ in range(4):
        x = torch.randn(6, 4, dtype=torch.float64)
        for model, opt in ((a, dot), (b, sgd)):
            opt.zero_grad(set_to_none=True)
            model(x).pow(2).sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("precision", ["32", "bf16"])
def test_the_engine_steps_the_methods_task_and_distillation_gradients_apart(precision):
    """One KD step (mdistiller's CE 0.1 + KD 0.9): the distillation momentum holds d(0.9 T^2
    KL)/dp, the task momentum d(0.1 CE)/dp + wd p, each from its own backward pass (under
    bf16 autocast too: no loss scaling to undo)."""
    cfg = compose_config("distill", ["model=cnn_student", "loss=kd", "loss.ce_weight=0.1",
                                     "loss.kd_weight=0.9", "optim=dot"])  # fmt: skip
    torch.manual_seed(0)
    teacher, student = FrozenTeacher(build_model("cnn_student", 10)), build_model("cnn_student", 10)
    kd = build_method(cfg, teacher, student, 16)
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8) % 10
    with autocast(CPU, precision):
        out = kd(student, x, y)
    params = list(student.parameters())
    before = [p.detach().clone() for p in params]
    kd_part = 0.9 * out.losses["loss_soft"] * 16
    task_grads = torch.autograd.grad(0.1 * out.losses["loss_hard"], params, retain_graph=True)
    kd_grads = torch.autograd.grad(kd_part, params, retain_graph=True)
    optimizer = build_optimizer([{"params": params}], cfg.optim, CPU)
    assert isinstance(optimizer, DOT) and optimizer.defaults["delta"] == 0.075
    Trainer._dot_step(optimizer, out.losses["loss"], out.split)
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    for p, p0, g_t, g_kd in zip(params, before, task_grads, kd_grads, strict=True):
        state = optimizer.state[p]
        torch.testing.assert_close(state["momentum_kd_buffer"], g_kd, rtol=1e-5, atol=1e-7)
        task = g_t + decay[id(p)] * p0
        torch.testing.assert_close(state["momentum_buffer"], task, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(p.detach(), p0 - 0.05 * (task + g_kd), rtol=1e-5, atol=1e-7)


N, SIZE, BATCH = 16, 16, 8


@pytest.fixture(scope="module")
def setting():
    cfg = compose_config("distill", ["model=cnn_student", "loss=dkd", "optim=dot", "sched=constant",
                                     f"trainer.batch_size={BATCH}"])  # fmt: skip
    torch.manual_seed(123)
    teacher = FrozenTeacher(build_model("cnn_student", 10))
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (N, 3, SIZE, SIZE), dtype=torch.uint8, generator=g)
    labels = torch.arange(N) % 10
    normalize = Normalizer((0.5,) * 3, (0.25,) * 3, CPU)
    train = DeviceLoader(images, labels, TrainSchedule(N, BATCH, seed=0, augment_pad=4),
                         normalize, CPU)  # fmt: skip
    test = DeviceLoader(images[:8], labels[:8], EvalSchedule(8, 8), normalize, CPU)
    data = DataBundle("random", 10, [str(c) for c in range(10)], SIZE, train, None, test,
                      train_images=N)  # fmt: skip
    return cfg, teacher, data


def fit(setting, run_dir: Path, epochs: int, resume: Checkpoint | None = None):
    cfg, teacher, data = setting
    torch.manual_seed(7)
    student = build_model("cnn_student", 10)
    objective = build_method(cfg, teacher, student, SIZE, data.train_images)
    stage = Stage("distill", objective, [{"params": list(student.parameters())}], epochs)
    place = RunPlace(run_dir, CPU, "32", NullLogger(), False, {})
    Trainer(student, data, cfg.trainer, cfg.optim, cfg.sched, place).fit(stage, resume=resume)
    return student, Checkpoint.read(run_dir / "checkpoints" / "last.pt", CPU)


def test_a_resumed_dot_run_continues_both_momenta_bit_for_bit(setting, tmp_path):
    whole, whole_state = fit(setting, tmp_path / "whole", epochs=2)
    _, cut = fit(setting, tmp_path / "cut", epochs=1)
    kinds = {k for s in cut.optimizer["state"].values() for k in s}
    assert kinds == {"momentum_buffer", "momentum_kd_buffer"}
    resumed, resumed_state = fit(setting, tmp_path / "cut", epochs=2, resume=cut)
    for p, q in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    for i, state in whole_state.optimizer["state"].items():
        theirs = resumed_state.optimizer["state"][i]
        assert all(torch.equal(state[k], theirs[k]) for k in state)


def test_what_only_the_task_reaches_keeps_no_distillation_momentum():
    """AT's term taps the stages, not the classifier: as in mdistiller (loss_kd = the AT term),
    the classifier's parameters get no distillation gradient, the others both."""
    cfg = compose_config("distill", ["model=resnet8", "loss=at", "optim=dot"])
    torch.manual_seed(0)
    teacher, student = FrozenTeacher(build_model("resnet8", 10)), build_model("resnet8", 10)
    at = build_method(cfg, teacher, student, 16)
    out = at(student, torch.randn(4, 3, 16, 16), torch.arange(4))
    optimizer = build_optimizer([{"params": list(student.parameters())}], cfg.optim, CPU)
    Trainer._dot_step(optimizer, out.losses["loss"], out.split)
    head = {id(p) for p in student.head.parameters()}
    for p in student.parameters():
        assert ("momentum_kd_buffer" in optimizer.state[p]) == (id(p) not in head)
        assert "momentum_buffer" in optimizer.state[p]
