"""`loss=NAME` -> its method: config schema, what it taps, objective factory.

Adding a method is one module beside the others (its pure loss, config dataclass with the
reference defaults and their source, objective, `METHOD`), one line here, and its tests; the
`loss=` config group, validation, the logit cache choice and the report follow from here.
"""

from __future__ import annotations

from kdlab.errors import KdlabError
from kdlab.methods import at, ce, dist, dkd, hint, kd, nst, ofd, pkt, reviewkd, rkd, sp
from kdlab.methods.base import LossConfig, Method

METHODS: dict[str, Method] = {
    "ce": ce.METHOD,
    "kd": kd.METHOD,
    "dkd": dkd.METHOD,
    "dist": dist.METHOD,
    "at": at.METHOD,
    "nst": nst.METHOD,
    "sp": sp.METHOD,
    "pkt": pkt.METHOD,
    "rkd": rkd.METHOD,
    "hint": hint.METHOD,
    "ofd": ofd.METHOD,
    "reviewkd": reviewkd.METHOD,
}


def method(name: str) -> Method:
    if name not in METHODS:
        raise KdlabError(f"unknown loss '{name}': choose one of {', '.join(METHODS)} (loss=NAME)")
    return METHODS[name]


def group_options() -> dict[str, LossConfig]:
    """The `loss=` config group: each method's settings with their reference defaults."""
    return {name: m.config() for name, m in METHODS.items()}
