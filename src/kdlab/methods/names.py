"""The built-in methods' names, and what the pre-flight reads of each one's class: each
module `kdlab.methods.NAME` registers `loss=NAME`.

Known without importing a method (or torch), so the CLI's first look at the overrides
(kdlab.runs.screen) can refuse an unknown `loss=`, or one the command or data.views cannot
run, in a fraction of a second; `tests/test_method_registry.py` checks the table against the
registry (and prints the one to paste here when a class changes). The checks here word the
refusals for both.
"""

from __future__ import annotations

from typing import NamedTuple

from kdlab.data.names import VIEWS
from kdlab.errors import KdlabError


class Traits(NamedTuple):
    """A method class's `taps`, `uses_views` and `one_teacher` (kdlab.methods.base.Method)."""

    taps: str
    uses_views: int
    one_teacher: str


FEATURES = "it reads the teacher's features"
TRAITS: dict[str, Traits] = {
    "ce": Traits("none", 1, ""),
    "kd": Traits("logits", 1, ""),
    "dkd": Traits("logits", 1, ""),
    "dist": Traits("logits", 1, ""),
    "nkd": Traits("logits", 1, ""),
    "ttm": Traits("logits", 1, ""),
    "wttm": Traits("logits", 1, ""),
    "ctkd": Traits("logits", 1, ""),
    "mlkd": Traits("logits", 2, ""),
    "wkd_l": Traits("logits", 1, "its class cost is the teacher's classifier"),
    "at": Traits("stages", 1, FEATURES),
    "nst": Traits("stages", 1, FEATURES),
    "sp": Traits("last", 1, FEATURES),
    "pkt": Traits("embedding", 1, FEATURES),
    "rkd": Traits("embedding", 1, FEATURES),
    "hint": Traits("middle", 1, FEATURES),
    "ofd": Traits("preact", 1, FEATURES),
    "reviewkd": Traits("review", 1, FEATURES),
    "crd": Traits("embedding", 1, FEATURES),
    "cc": Traits("embedding", 1, FEATURES),
    "vid": Traits("stages", 1, FEATURES),
    "ab": Traits("preact", 1, FEATURES),
    "ft": Traits("last", 1, FEATURES),
    "fsp": Traits("stem_stages", 1, FEATURES),
    "catkd": Traits("prepool", 1, FEATURES),
    "ickd": Traits("prepool", 1, FEATURES),
    "srd": Traits("prepool", 1, FEATURES),
    "kdsvd": Traits("stages", 1, FEATURES),
    "sdd": Traits("prepool", 1, FEATURES),
}
BUILT_IN = tuple(TRAITS)


def check_view_count(loss_name: str | None, wanted: int, views: str) -> None:
    """data.views gives each training image the `wanted` views of loss=`loss_name` (None: a
    command that trains without a method, one view); `views` is one of VIEWS."""
    if wanted == VIEWS[views]:
        return
    if wanted > 1:
        raise KdlabError(f"loss={loss_name} trains on a weak and a strong view of each image: "
                         "set data.views=weak_strong")  # fmt: skip
    who = "this command" if loss_name is None else f"loss={loss_name}"
    raise KdlabError(f"{who} reads one view per image: data.views={views} is for methods that "
                     "read two (loss=mlkd); set data.views=weak")  # fmt: skip


def check_stage2_method(name: str, logit: list[str]) -> None:
    """`kdlab fitnet`'s stage two distils the logits: one of `logit`, the methods that tap
    only them, on one view of each image."""
    if name not in logit:
        raise KdlabError(
            f"kdlab fitnet's stage two takes a logit method, not loss={name}: choose one "
            f"of {', '.join(logit)} (loss=NAME)"
        )


def check_teachers_taken(name: str, one_teacher: str, count: int) -> None:
    """loss=`name` takes `count` teachers: one, or several where `one_teacher` is empty."""
    if count > 1 and one_teacher:
        raise KdlabError(
            f"loss={name} takes one teacher ({one_teacher}); teacher.ckpt has {count}: name "
            "one, or average several with a logit method (loss=kd, dkd, dist, ...)"
        )
