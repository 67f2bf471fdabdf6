"""Pretrained weights for a freshly built model: read a state dict, check that it fits the
architecture, load everything but the classifier head (which is new: the data set's own
classes), and say in the log what was kept and what is new.

The head is found structurally, not by name: the tensors whose shapes change with the
number of classes (two builds on the meta device, no memory), so any classifier works.
"""

from __future__ import annotations

import logging
import pickle
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from kdlab.errors import KdlabError

log = logging.getLogger("kdlab")


def head_names(build: Callable[[int], nn.Module], num_classes: int) -> set[str]:
    """The state-dict keys whose shapes depend on the number of classes: the classifier head."""
    with torch.device("meta"):
        ours, other = build(num_classes).state_dict(), build(num_classes + 1).state_dict()
    return {key for key, value in ours.items() if other[key].shape != value.shape}


def on_meta(model: nn.Module) -> bool:
    """Built on the meta device (the pre-flight's checks): check the weights, copy nothing."""
    return any(p.is_meta for p in model.parameters())


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """A state dict from a torch file: plain, or under "state_dict"/"model" (a kdlab checkpoint).

    Memory-mapped where the file allows, so checking a large file costs no read of it.
    """
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # the legacy (pre-zip) format cannot be memory-mapped
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else "unreadable"
        raise KdlabError(
            f"cannot read pretrained weights {path} ({reason}): give a state dict saved with "
            "torch.save(model.state_dict(), PATH)"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise KdlabError(
            f"{path} holds no state dict (a mapping of names to tensors): give one saved with "
            "torch.save(model.state_dict(), PATH)"
        )
    return dict(state)


def _shape(t: Tensor) -> str:
    return "x".join(str(s) for s in t.shape) or "scalar"


def mismatch(expected: Mapping[str, Tensor], given: Mapping[str, Tensor], head: set[str]) -> str:
    """What keeps `given` from fitting `expected` outside the head ("" when it fits)."""
    needed = [key for key in expected if key not in head]
    missing = [key for key in needed if key not in given]
    unexpected = [key for key in given if key not in expected]
    reshaped = [
        f"{key} is {_shape(given[key])}, the model's {_shape(expected[key])}"
        for key in needed
        if key in given and given[key].shape != expected[key].shape
    ]
    parts = [
        f"{len(keys)} {what} (first: {keys[0]})"
        for keys, what in ((missing, "missing"), (unexpected, "unexpected"), (reshaped, "differ"))
        if keys
    ]
    return ", ".join(parts)


def load_pretrained(
    model: nn.Module, state: Mapping[str, Tensor], head: set[str], source: str, what: str
) -> None:
    """Copy `state` into `model` except its `head`; a one-line error naming the first misfit
    when `state` belongs to another architecture. On the meta device only the check runs."""
    expected = model.state_dict()
    problem = mismatch(expected, state, head)
    if problem:
        raise KdlabError(
            f"pretrained weights {source} do not fit {what}: {problem}; give weights of this "
            "architecture"
        )
    kept = {key: value for key, value in state.items() if key not in head}
    if not on_meta(model):
        model.load_state_dict(kept, strict=False)
        log_kept(source, kept, sorted(head))


def log_kept(source: str, kept: Mapping[str, Tensor], new: list[str]) -> None:
    """One line: how many tensors came from the weights, by top-level module, and the new ones."""
    by_module = Counter(key.split(".", 1)[0] for key in kept)
    modules = ", ".join(f"{name} {count}" for name, count in by_module.items())
    log.info(
        "pretrained weights %s: kept %d tensors (%s); new: %s (the head, for this data set's "
        "classes)",
        source,
        len(kept),
        modules,
        ", ".join(new) or "none",
    )
