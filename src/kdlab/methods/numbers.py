"""The number settings of each built-in method: its `loss.KEY`s typed int or float (or
null), which kdlab.methods.checks.check_loss_settings refuses when non-finite or negative, in
the order it checks them; and the bounds beyond that a method declares (`Method.bounds`).

Known without importing a method (or torch), so the CLI's first look at the overrides
(kdlab.runs.screen) can refuse `loss=at loss.beta=-1` or `loss=at loss.p=0` in a fraction of
a second. NUMBERS is generated from the registry (`settings_of`): tests/test_method_registry.py
checks it, and prints it to paste here when a method's settings change. BOUNDS is where the
built-in methods declare their bounds (each class's `bounds` names its entry; a plugin's
method declares its own on the class).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kdlab.errors import KdlabError


@dataclass(frozen=True)
class Bound:
    """A method's own lower bound on `loss.KEY` beyond `>= 0`: its value (`length`: how many
    values its list holds) at least `minimum`, where the bool setting `loss.WHEN` (if any) is
    true. `why` and `fix` end the one-line error."""

    key: str
    minimum: int
    why: str
    fix: str
    length: bool = False
    when: str = ""


def check_bound(method: str, bound: Bound, value: Any, switched_on: bool = True) -> None:
    """`loss=method`'s `bound` on the typed `value` of its key (`switched_on`: loss.WHEN's)."""
    if not switched_on:
        return
    held = len(value) if bound.length else value
    if held >= bound.minimum:
        return
    condition = f" with loss.{bound.when}=true" if bound.when else ""
    need = f"list {bound.minimum} or more values" if bound.length else f"be >= {bound.minimum}"
    raise KdlabError(
        f"loss.{bound.key} must {need} for loss={method}{condition} ({bound.why}), got "
        f"{held}: {bound.fix}"
    )


def check_number(method: str, key: str, value: float) -> None:
    """One number setting of `loss=method`: finite and >= 0 (its own bounds are the method's)."""
    fix = f"(set loss.{key}=N with N >= 0)"
    if not math.isfinite(value):
        raise KdlabError(f"loss.{key} must be a finite number for loss={method}, got {value} {fix}")
    if value < 0:
        raise KdlabError(f"loss.{key} must be >= 0 for loss={method}, got {value} {fix}")


NUMBERS: dict[str, dict[str, type]] = {
    "ce": {},
    "kd": {"ce_weight": float, "kd_weight": float},
    "dkd": {
        "weight": float,
        "alpha": float,
        "beta": float,
        "warmup": int,
        "ce_weight": float,
        "kd_weight": float,
    },
    "dist": {
        "weight": float,
        "beta": float,
        "gamma": float,
        "ce_weight": float,
        "kd_weight": float,
    },
    "nkd": {
        "temperature": float,
        "gamma": float,
        "ce_weight": float,
        "kd_weight": float,
        "weight": float,
    },
    "ttm": {"weight": float, "gamma": float, "ce_weight": float, "kd_weight": float},
    "wttm": {"weight": float, "gamma": float, "ce_weight": float, "kd_weight": float},
    "ctkd": {
        "ce_weight": float,
        "weight": float,
        "t_start": float,
        "t_range": float,
        "theta_init": float,
        "loops": int,
        "lambda_max": float,
        "lambda_min": float,
        "kd_weight": float,
    },
    "mlkd": {"ce_weight": float, "weight": float},
    "wkd_l": {
        "gamma": float,
        "temperature": float,
        "reg": float,
        "iters": int,
        "sharpen": float,
        "decay_start": float,
        "ce_weight": float,
        "kd_weight": float,
        "weight": float,
    },
    "at": {"weight": float, "p": int, "beta": float, "ce_weight": float, "kd_weight": float},
    "nst": {"weight": float, "beta": float, "ce_weight": float, "kd_weight": float},
    "sp": {"weight": float, "beta": float, "ce_weight": float, "kd_weight": float},
    "pkt": {"weight": float, "beta": float, "ce_weight": float, "kd_weight": float},
    "rkd": {
        "weight": float,
        "distance_weight": float,
        "angle_weight": float,
        "beta": float,
        "ce_weight": float,
        "kd_weight": float,
    },
    "hint": {"weight": float, "beta": float, "ce_weight": float, "kd_weight": float},
    "ofd": {"weight": float, "beta": float, "ce_weight": float, "kd_weight": float},
    "reviewkd": {
        "weight": float,
        "warmup": int,
        "beta": float,
        "ce_weight": float,
        "kd_weight": float,
    },
    "crd": {
        "weight": float,
        "feat_dim": int,
        "nce_k": int,
        "nce_t": float,
        "nce_m": float,
        "beta": float,
        "ce_weight": float,
        "kd_weight": float,
    },
    "cc": {"weight": float, "feat_dim": int, "beta": float, "ce_weight": float, "kd_weight": float},
    "vid": {
        "weight": float,
        "init_pred_var": float,
        "eps": float,
        "beta": float,
        "ce_weight": float,
        "kd_weight": float,
    },
    "ab": {
        "weight": float,
        "margin": float,
        "init_epochs": int,
        "init_lr_scale": float,
        "beta": float,
        "ce_weight": float,
        "kd_weight": float,
    },
    "ft": {
        "weight": float,
        "init_lr_scale": float,
        "init_epochs": int,
        "beta": float,
        "ce_weight": float,
        "kd_weight": float,
    },
    "fsp": {
        "weight": float,
        "init_epochs": int,
        "init_lr_scale": float,
        "beta": float,
        "ce_weight": float,
        "kd_weight": float,
    },
    "catkd": {
        "weight": float,
        "resolution": int,
        "beta": float,
        "ce_weight": float,
        "kd_weight": float,
    },
    "ickd": {"weight": float, "beta": float, "ce_weight": float, "kd_weight": float},
    "srd": {
        "weight": float,
        "feat_weight": float,
        "beta": float,
        "ce_weight": float,
        "kd_weight": float,
    },
    "kdsvd": {"weight": float, "k": int, "beta": float, "ce_weight": float, "kd_weight": float},
    "sdd": {
        "ce_weight": float,
        "weight": float,
        "alpha": float,
        "beta": float,
        "warmup": int,
        "complementary_weight": float,
        "kd_weight": float,
    },
}

BOUNDS: dict[str, tuple[Bound, ...]] = {
    "at": (
        Bound(
            key="p",
            minimum=1,
            why="p=0 makes every attention map constant, so the loss teaches nothing",
            fix="the paper uses loss.p=2",
        ),
    ),
    "mlkd": (
        Bound(
            key="temperatures",
            minimum=4,
            why="its strong view's sum reads the 4th and 5th temperatures, T first",
            fix="give more or set loss.official_strong_kd=false",
            length=True,
            when="official_strong_kd",
        ),
    ),
}
# The default of each bool setting a bound of BOUNDS depends on (`Bound.when`), by method.
SWITCHES: dict[str, dict[str, bool]] = {"mlkd": {"official_strong_kd": True}}
