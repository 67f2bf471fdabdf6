"""Checkpoints: one typed record per file, written atomically, loaded safely, self-describing.

`Checkpoint` names every key a checkpoint file holds; kdlab reads and writes them only
through it. A checkpoint carries its resolved config and data-set facts, so a model (a
teacher, say) is rebuilt from the file alone. The file is a plain dict of tensors and Python
values, loaded with `weights_only=True`: a crafted file cannot run code.
"""

from __future__ import annotations

import pickle
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import torch
from torch import nn

from kdlab.engine.provenance import TRAINED_ON, check_intact, read_record, record_path
from kdlab.errors import KdlabError
from kdlab.models import build_model, build_options
from kdlab.models.pretrained import mismatch
from kdlab.paths import TEMP_SUFFIX, checkpoint_in, found_checkpoint, write_atomic
from kdlab.version import __version__

if TYPE_CHECKING:
    from kdlab.data import DataBundle

UNNAMED = "the checkpoint"  # what errors call a checkpoint not read from a named file


@dataclass
class Checkpoint:
    """What one checkpoint file holds: the weights, the config that rebuilds the model, and
    (for last.pt/best.pt of a run) the whole training state a resume continues from."""

    model: dict[str, Any]  # the model's state_dict
    config: dict[str, Any]  # the run's resolved config
    num_classes: int = 0
    in_channels: int = 3  # of the images the model takes
    class_names: list[str] = field(default_factory=list)
    data: str = ""  # the data set's name
    image_size: int = 0  # the side of the square images the model takes; 0 = not recorded
    mean: list[float] = field(default_factory=list)  # the inputs' normalisation (per channel)
    std: list[float] = field(default_factory=list)  # empty: not recorded (older files)
    stage: str = ""  # the stage that wrote it (train, distill, stage1, stage2)
    epoch: int = 0  # epochs done, counted over all stages
    stage_epoch: int = 0  # epochs done in `stage`
    objective: dict[str, Any] = field(default_factory=dict)  # e.g. a FitNet regressor
    optimizer: dict[str, Any] = field(default_factory=dict)
    scheduler: dict[str, Any] = field(default_factory=dict)
    scaler: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)
    loader: dict[str, Any] = field(default_factory=dict)  # a stateful train loader's counts
    history: list[dict[str, Any]] = field(default_factory=list)  # earlier stages' results
    # The teacher a distillation run learns from ({"path", "sha256"}; several teachers:
    # {"teachers": [{"path", "sha256"}, ...]}): a resume uses those.
    teacher: dict[str, Any] = field(default_factory=dict)
    best_score: float = float("-inf")
    best_record: dict[str, Any] = field(default_factory=dict)
    last_record: dict[str, Any] = field(default_factory=dict)
    train_time_s: float = 0.0
    train_images: int = 0
    skipped_batches: int = 0
    kdlab_version: str = __version__

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> Checkpoint:
        """The record of a loaded file; keys it does not know are ignored (newer versions)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in state.items() if k in known})

    @classmethod
    def read(
        cls,
        path: str | Path,
        map_location: str | torch.device = "cpu",
        *,
        allow_modified: bool = False,
        override: str = "--allow-modified",
    ) -> Checkpoint:
        return cls.from_dict(load_checkpoint(path, map_location, allow_modified, override))

    def to_dict(self) -> dict[str, Any]:
        """The file's dict (shallow: tensors are not copied, unlike dataclasses.asdict)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def write(self, path: Path) -> None:
        save_checkpoint(self.to_dict(), path)

    def build_model(self, source: Path | str = UNNAMED) -> nn.Module:
        """The model this checkpoint (read from `source`, named in errors) describes, with its
        weights."""
        return model_from_checkpoint(self.to_dict(), source)


def data_facts(data: DataBundle) -> dict[str, Any]:
    """What a checkpoint keeps of the data its model was trained on (Checkpoint's fields);
    the run's record copies them (TRAINED_ON), so they are read without loading the file."""
    return {
        "data": data.name,
        "num_classes": data.num_classes,
        "in_channels": data.in_channels,
        "class_names": list(data.class_names),
        "image_size": data.image_size,
        "mean": list(data.mean),
        "std": list(data.std),
    }


def read_header(
    path: str | Path, *, allow_modified: bool = False, override: str = "--allow-modified"
) -> Checkpoint:
    """What the checkpoint at `path` says about itself but its weights (`model` is empty):
    its record's copy (no load and no hash: the run's read of the file checks the file against
    its record), else the file, memory-mapped (checked against its record first, as every
    read is: records written before TRAINED_ON existed, or teacher.allow_modified)."""
    path = checkpoint_in(path)
    record = read_record(path) if path.is_file() and not allow_modified else None
    facts = record.get(TRAINED_ON) if record is not None else None
    if record is not None and isinstance(facts, Mapping):
        copied = {**facts, "model": {}, "config": record.get("config")}
        if not record_problem(copied):
            return Checkpoint.from_dict(copied)
    state = load_checkpoint(path, "cpu", allow_modified, override, mmap=True)
    return Checkpoint.from_dict({**state, "model": {}})


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write `state` (plus the kdlab version) to `path` atomically; a record beside `path`
    (best.pt.json) described the old bytes, so it goes once the new ones are in place (the
    run writes a new one). A write that fails (a full disk) leaves both as they were."""
    write_atomic(path, lambda f: torch.save({**state, "kdlab_version": __version__}, f))
    record_path(path).unlink(missing_ok=True)


def copy_checkpoint(source: Path, target: Path) -> None:
    """Copy a checkpoint atomically: a kill mid-copy must not leave a torn `target`."""

    def copy(f: BinaryIO) -> None:
        with source.open("rb") as src:
            shutil.copyfileobj(src, f)

    write_atomic(target, copy)


def remove_stale_temp_files(directory: Path) -> list[Path]:
    """Delete the temp files of writes a kill cut short (call before writing resumes)."""
    stale = sorted(directory.glob(f".*{TEMP_SUFFIX}")) if directory.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    allow_modified: bool = False,
    override: str = "--allow-modified",
    mmap: bool = False,
) -> dict[str, Any]:
    """Load a kdlab checkpoint (a .pt file, or a run dir's best.pt); anything unreadable or
    unsafe, or a file that differs from its record (unless `allow_modified`; `override` says
    how to allow it), is a one-line KdlabError. `mmap`: the tensors are mapped, not read (a
    file torch.save wrote as a zip; a bare pickle is read)."""
    path = found_checkpoint(path)
    check_load_device(map_location)
    check_intact(path, allow_modified, override)
    with path.open("rb") as file:
        head = file.read(4)
    if head[:2] != b"PK" and head[:1] != b"\x80":  # torch.save: a zip, or a bare pickle
        raise KdlabError(
            f"{path} is not a checkpoint (not a file torch.save wrote): give a kdlab .pt file "
            "or a run dir"
        )
    try:
        with warnings.catch_warnings():  # torch warns about unusual pickle protocols
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(
                path, map_location, weights_only=True, mmap=mmap and head[:2] == b"PK"
            )
    except pickle.UnpicklingError as error:
        raise KdlabError(
            f"refusing to load {path}: it holds more than weights ({_unsafe_part(error)}); "
            "only load checkpoints you trust"
        ) from None
    except Exception as error:  # torch.load of a damaged file raises all sorts of errors
        raise KdlabError(
            f"cannot read checkpoint {path} ({type(error).__name__}: truncated or corrupt): "
            "give an intact .pt file or a run dir"
        ) from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise KdlabError(f"{path} is not a kdlab checkpoint (no model weights and config)")
    problem = record_problem(state)
    if problem:
        raise KdlabError(
            f"{path} is not a kdlab checkpoint ({problem}): give a .pt file kdlab wrote, or a "
            "run dir"
        )
    return state


def check_load_device(map_location: str | torch.device) -> None:
    """The device to load onto, checked first: torch.load's own error for a missing GPU reads
    like a damaged file."""
    try:
        device = torch.device(map_location)
    except (RuntimeError, TypeError, ValueError):
        raise KdlabError(
            f"unknown device '{map_location}': load onto cpu, cuda, cuda:N or mps"
        ) from None
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and (device.index or 0) >= gpus:
        raise KdlabError(
            f"cannot load onto {device}: this machine has {gpus} CUDA GPU(s); load onto cpu"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise KdlabError(f"cannot load onto {device}: MPS is not available here; load onto cpu")


def record_problem(state: Mapping[str, Any]) -> str:
    """What keeps a loaded dict from being a checkpoint record ("" when nothing does): the
    types and ranges of the keys it holds that the readers rely on (the model config is
    checked where a model is rebuilt)."""
    weights, config = state["model"], state["config"]
    if not isinstance(weights, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in weights.values()
    ):
        return f"its model is a {type(weights).__name__}, not a dict of weights"
    if not isinstance(config, Mapping):
        return f"its config is a {type(config).__name__}, not a dict"
    for key, low in (("num_classes", 0), ("in_channels", 1), ("image_size", 0), ("epoch", 0)):
        value = state.get(key, low)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            return f"its {key} is {value!r}, not an int >= {low}"
    names = state.get("class_names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return "its class_names are not a list of names"
    return ""


def _unsafe_part(error: pickle.UnpicklingError) -> str:
    """The line of torch's long refusal that names what was refused (e.g. GLOBAL posix.system)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    named = [line for line in lines if "nsupported" in line]
    return (named or lines or ["unsafe content"])[0][:120]


def model_from_checkpoint(state: Mapping[str, Any], source: Path | str = UNNAMED) -> nn.Module:
    """Rebuild the model a checkpoint (read from `source`, named in errors) describes and load
    its weights; weights of another architecture or shape are a one-line error naming the
    first misfit."""
    model = rebuilt_model(state, source)
    arch = state["config"]["model"]["arch"]
    problem = mismatch(model.state_dict(), state["model"], set())
    if problem:
        raise KdlabError(
            f"the weights in {source} do not fit its model {arch}: {problem}; give a checkpoint "
            "as kdlab wrote it"
        )
    model.load_state_dict(state["model"])
    return model


def rebuilt_model(state: Mapping[str, Any], source: Path | str = UNNAMED) -> nn.Module:
    """The untrained model a checkpoint's config describes (on the default device: the meta
    device builds it in no time and no memory, to check its architecture and feature points
    before a run starts); an unknown architecture or option is a one-line error."""
    model_cfg = state["config"].get("model")
    if not isinstance(model_cfg, Mapping) or not isinstance(model_cfg.get("arch"), str):
        raise KdlabError(
            f"{source} has no model config (config.model.arch), so its model cannot be "
            "rebuilt: give a .pt file kdlab wrote, or a run dir"
        )
    try:
        options = build_options(model_cfg, pretrained=False)  # the weights are the checkpoint's
        return build_model(
            model_cfg["arch"], state["num_classes"], state.get("in_channels", 3), **options
        )
    except KdlabError as error:
        raise KdlabError(f"cannot rebuild the model of {source}: {error}") from None
