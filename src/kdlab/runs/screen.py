"""The CLI's first, torch-free look at a training command's overrides: an unknown method
(`loss=nope`) and an out-of-range `trainer.*` value are refused before torch is imported
(~3 s on a small machine), so the commonest typos answer in well under a second.

It refuses only what it is sure of and leaves everything else (types, interpolations,
sweeps, the other groups and keys) to the full pre-flight (kdlab.runs.preflight), which
checks these again on the composed config.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from kdlab.engine.settings import TrainerConfig
from kdlab.errors import KdlabError
from kdlab.methods.names import BUILT_IN
from kdlab.runs.ranges import check_trainer_values
from kdlab.runs.suggest import unknown_option

LOSS_COMMANDS = ("distill", "fitnet")


def screen_overrides(command: str, overrides: Sequence[str]) -> None:
    """Raise the pre-flight's one line for an unknown built-in `loss=` or a bad `trainer.*`."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException:
        return  # the pre-flight words a parse error
    values = {
        o.key_or_group: o.value()
        for o in parsed
        if not (o.is_delete() or o.is_add() or o.is_force_add() or o.is_sweep_override())
    }
    # A plugin that imported the method base may have registered more methods: the
    # pre-flight, which sees them, judges the name then.
    if command in LOSS_COMMANDS and "kdlab.methods.base" not in sys.modules:
        name = values.get("loss")
        if isinstance(name, str) and name not in BUILT_IN:
            raise KdlabError(unknown_option("loss", name, sorted(BUILT_IN)))
    trainer = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("trainer.")}
    if trainer:
        check_trainer_overrides(trainer)


def check_trainer_overrides(trainer: dict[str, Any]) -> None:
    """The `trainer.*` overrides on the schema's defaults; a value of the wrong type or an
    unknown key is the pre-flight's to word (it knows the did-you-mean)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        node = OmegaConf.merge(OmegaConf.structured(TrainerConfig), trainer)
        typed = OmegaConf.to_object(node)
    except (OmegaConfBaseException, ValueError):
        return
    assert isinstance(typed, TrainerConfig)
    check_trainer_values(typed)
