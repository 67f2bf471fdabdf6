"""Checkpoints: one dict per file, written atomically, loaded safely, self-describing.

A checkpoint carries its resolved config and data-set facts, so a model (a teacher, say)
is rebuilt from the file alone. Loading uses `weights_only=True`: a crafted file cannot
run code.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab import __version__
from kdlab.errors import KdlabError
from kdlab.models import build_model


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write to a temp file in the same directory, fsync, then rename over `path`.

    A kill at any moment leaves either the old file or the new one, never a torn one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({**state, "kdlab_version": __version__}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a kdlab checkpoint; anything unreadable or unsafe is a one-line KdlabError."""
    if not path.is_file():
        raise KdlabError(f"checkpoint not found: {path} (give a .pt file or a run dir)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "unsafe content"
        raise KdlabError(
            f"refusing to load {path}: it holds more than weights ({first[:120]}); "
            "only load checkpoints you trust"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as error:
        raise KdlabError(
            f"cannot read checkpoint {path}: {type(error).__name__} (truncated or corrupt?)"
        ) from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise KdlabError(f"{path} is not a kdlab checkpoint (no model weights and config)")
    return state


def model_from_checkpoint(state: dict[str, Any]) -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights."""
    model_cfg = dict(state["config"]["model"])
    arch = model_cfg.pop("arch")
    model = build_model(arch, state["num_classes"], **model_cfg)
    model.load_state_dict(state["model"])
    return model
