"""Every registered method, driven by the registry: a new method is tested without editing a
list. Each builds against a tiny teacher and student, takes one step (and its init stage's,
if it has one) with finite loss and gradients, and its settings round-trip through the config.
Each method's own formula is tested against an independent float64 formula elsewhere."""

from __future__ import annotations

import copy
import dataclasses
import functools
import types
import typing
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from kdlab.methods import FeatureMethod, LogitMethod, Method
from kdlab.methods.base import METHODS, MethodContext, settings_of
from kdlab.methods.names import BUILT_IN, TRAITS, Traits
from kdlab.methods.numbers import BOUNDS, NUMBERS, SWITCHES
from kdlab.methods.registry import method
from kdlab.methods.teacher import FrozenTeacher
from kdlab.models import build_model
from kdlab.runs.preflight import compose_config
from kdlab.runs.schema import DistillConfig

BATCH, SIZE, TRAIN_IMAGES = 6, 32, 64


def chosen(name: str) -> list[str]:
    """`loss=NAME` with the data its method reads: both views for a method of two (mlkd)."""
    return [f"loss={name}", *(["data.views=weak_strong"] if METHODS[name].uses_views > 1 else [])]


@functools.cache
def composed(name: str) -> DistillConfig:
    """`kdlab distill model=resnet8 loss=NAME`'s config, composed once per method for the
    tests that build it (a composition costs ~0.15 s)."""
    cfg = compose_config("distill", ["model=resnet8", *chosen(name)])
    assert isinstance(cfg, DistillConfig)
    return cfg


def built(name: str) -> tuple[Method, torch.nn.Module]:
    torch.manual_seed(0)
    student, teacher = build_model("resnet8", 10), build_model("resnet14", 10)
    cfg = copy.deepcopy(composed(name))
    context = MethodContext(
        FrozenTeacher(teacher), student, cfg.T, cfg.alpha, SIZE, 0.0, TRAIN_IMAGES
    )
    return method(name)(cfg.loss, context), student


def batch() -> tuple[torch.Tensor, torch.Tensor, dict]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, 3, SIZE, SIZE, generator=g)
    y = torch.randint(0, 10, (BATCH,), generator=g)
    return x, y, {"indices": torch.arange(BATCH)}


def finite_step(objective, student, uses_indices: bool) -> dict[str, float]:
    x, y, named = batch()
    student.train()
    objective.train()
    out = objective(student, x, y, **(named if uses_indices else {}))
    loss = out.losses["loss"]
    assert torch.isfinite(loss), out.losses
    loss.backward()
    grads = [p.grad for p in [*student.parameters(), *objective.parameters()] if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    return {k: v.item() for k, v in out.losses.items()}


def test_the_built_in_names_are_the_names_their_modules_register():
    """kdlab.methods.names is what the torch-free screen refuses `loss=` against: each module
    `kdlab.methods.NAME` must register `loss=NAME`."""
    assert [m.__module__.rsplit(".", 1)[1] for m in METHODS.values()][: len(BUILT_IN)] == list(
        BUILT_IN
    )
    assert list(METHODS)[: len(BUILT_IN)] == list(BUILT_IN)


def number_kind(kind: Any) -> type | None:
    """int or float for a setting typed so (or also null), else None."""
    union = typing.get_origin(kind) in (typing.Union, types.UnionType)
    kinds = [k for k in typing.get_args(kind) if k is not type(None)] if union else [kind]
    return kinds[0] if len(kinds) == 1 and kinds[0] in (int, float) else None


def test_the_number_settings_table_is_the_registrys():
    """kdlab.methods.numbers is what the torch-free screen refuses `loss.KEY=-1` by: each
    built-in method's int and float settings, in the order check_loss_settings reads them."""
    derived = {
        name: {k: number_kind(t) for k, t, _ in settings_of(METHODS[name]) if number_kind(t)}
        for name in BUILT_IN
    }
    rows = {name: ", ".join(f"{k!r}: {t.__name__}" for k, t in kinds.items())
            for name, kinds in derived.items()}  # fmt: skip
    table = "\n".join(f"    {name!r}: {{{row}}}," for name, row in rows.items())
    assert derived == NUMBERS, f"paste into kdlab/methods/numbers.py's NUMBERS:\n{table}"
    assert [list(k) for k in derived.values()] == [list(kinds) for kinds in NUMBERS.values()]


def test_the_bounds_table_is_the_registrys():
    """kdlab.methods.numbers.BOUNDS and SWITCHES are what the torch-free screen refuses
    `loss=at loss.p=0` by: each built-in method's declared bounds, and the defaults of the bool
    settings they depend on."""
    derived = {name: METHODS[name].bounds for name in BUILT_IN if METHODS[name].bounds}
    assert derived == BOUNDS, f"paste into kdlab/methods/numbers.py's BOUNDS:\n{derived!r}"
    defaults = {name: {k: d for k, _, d in settings_of(METHODS[name])} for name in derived}
    switches = {
        name: {b.when: defaults[name][b.when] for b in bounds if b.when}
        for name, bounds in derived.items()
        if any(b.when for b in bounds)
    }
    assert switches == SWITCHES, f"paste into kdlab/methods/numbers.py's SWITCHES:\n{switches}"
    for name, bounds in derived.items():
        assert all(isinstance(defaults[name][b.when], bool) for b in bounds if b.when), name
        assert all(b.length or b.key in NUMBERS[name] for b in bounds), name


def test_the_traits_table_is_the_registrys():
    """kdlab.methods.names.TRAITS is what the torch-free screen refuses `kdlab fitnet loss=at`,
    data.views and several teachers by: each built-in class's taps, uses_views, one_teacher."""
    derived = {n: Traits(m.taps, m.uses_views, m.one_teacher) for n, m in METHODS.items()}
    built_in = {name: derived[name] for name in BUILT_IN}
    table = "\n".join(f"    {name!r}: {traits!r}," for name, traits in built_in.items())
    assert built_in == TRAITS, f"paste into kdlab/methods/names.py's TRAITS:\n{table}"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_takes_a_finite_step(name):
    distiller, student = built(name)
    assert isinstance(distiller, LogitMethod | FeatureMethod) or distiller.taps == "none"
    losses = finite_step(distiller, student, distiller.uses_indices)
    assert "loss" in losses
    init = distiller.init_stage(student)
    if init is not None:
        student.zero_grad()
        finite_step(init.objective, student, uses_indices=False)
        assert init.epochs == distiller.init_epochs and init.modules


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_settings_round_trip_through_the_config(name):
    """The composed `loss=NAME` node holds the class's defaults, survives a trip through YAML
    (what .hydra/config.yaml stores) and typed again, and every numeric setting is settable."""
    cls = method(name)
    loss = composed(name).loss
    assert isinstance(loss, cls.settings_class)
    defaults = {f.name: getattr(cls, f.name) for f in dataclasses.fields(loss) if f.name != "name"}
    assert {k: getattr(loss, k) for k in defaults} == defaults
    yaml = OmegaConf.to_yaml(OmegaConf.structured(loss))
    back = OmegaConf.merge(OmegaConf.structured(cls.settings_class), OmegaConf.create(yaml))
    assert OmegaConf.to_object(back) == loss
    floats = {key: value for key, value in defaults.items() if isinstance(value, float)}
    # every range holds its default's half; all set at once, in one composition
    halved = {key: value / 2 if value else 0.5 for key, value in floats.items()}
    settings = [f"loss.{key}={value}" for key, value in halved.items()]
    changed = compose_config("distill", [*chosen(name), *settings])
    assert {key: getattr(changed.loss, key) for key in halved} == halved


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_refuses_an_unknown_setting(name):
    from kdlab.errors import KdlabError

    with pytest.raises(KdlabError, match="bogus"):
        compose_config("distill", [f"loss={name}", "loss.bogus=1"])


def test_feature_methods_take_beta_as_the_old_name_of_their_weight():
    """`loss.beta` (RepDistiller's -b) kept working when the weight became `loss.weight`."""
    at, _ = built("at")
    assert at.weight == 1000.0
    cfg = compose_config("distill", ["model=resnet8", "loss=at", "loss.beta=7"])
    context = MethodContext(FrozenTeacher(build_model("resnet14", 10)), build_model("resnet8", 10),
                            cfg.T, cfg.alpha, SIZE, 0.0)  # fmt: skip
    assert method("at")(cfg.loss, context).weight == 7.0


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_computes_its_losses_in_float32_under_bf16_autocast(name):
    distiller, student = built(name)
    x, y, named = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = distiller(student, x, y, **(named if distiller.uses_indices else {}))
    assert {k: v.dtype for k, v in out.losses.items()} == dict.fromkeys(out.losses, torch.float32)
    assert torch.isfinite(out.losses["loss"])


@pytest.mark.parametrize("name", sorted(n for n, cls in METHODS.items() if cls.taps == "logits"))
def test_every_logit_method_trains_on_cached_logits_made_in_inference_mode(name):
    """The logit cache hands a step the teacher's logits computed under inference mode."""
    distiller, student = built(name)
    x, y, _ = batch()
    with torch.inference_mode():
        cached = distiller.teacher.model(x)
    out = distiller(student, x, y, cached.clone())
    out.losses["loss"].backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
