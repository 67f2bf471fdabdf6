"""Any timm model by name (`model=timm model.name=NAME`), an optional extra
(`pip install 'kdlab[timm]'`), randomly initialised or pretrained.

Pretrained weights are timm's own: from the Hugging Face cache (`$HF_HOME/hub`, downloaded
when missing and the network allows; `HF_HUB_OFFLINE=1` never tries), or from a local file
(`model.pretrained_file=PATH`). The feature points are timm's `feature_info` modules, so
the feature methods and FitNets tap the stages timm itself exposes.
"""

from __future__ import annotations

import difflib
import warnings
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from kdlab.errors import KdlabError
from kdlab.models.pretrained import head_names, log_kept, on_meta

INSTALL = "pip install 'kdlab[timm]'"


def import_timm() -> ModuleType:
    try:
        import timm
    except ImportError as error:
        raise KdlabError(
            f"model=timm needs the timm package, which is not installed ({error}): {INSTALL}"
        ) from None
    return timm


def check_name(timm: ModuleType, name: str) -> None:
    """A model timm knows (a pretrained tag such as resnet18.a1_in1k allowed)."""
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name.split(".")[0], timm.list_models(), n=3, cutoff=0.5)
    hint = f" (close: {', '.join(close)})" if close else ""
    raise KdlabError(
        f"unknown timm model '{name}'{hint}: timm.list_models('*PART*') lists the names "
        "(model.name=NAME)"
    )


def timm_model(
    num_classes: int,
    name: str = "resnet18",
    in_channels: int = 3,
    pretrained: bool = False,
    pretrained_file: str | None = None,
) -> nn.Module:
    """`timm.create_model(name)` for `in_channels`-channel images; pretrained (a file implies
    it) with a new `num_classes`-way head; its feature points from timm's `feature_info`."""
    timm = import_timm()
    check_name(timm, name)

    def build(classes: int) -> nn.Module:
        return timm.create_model(name, num_classes=classes, in_chans=in_channels)

    if pretrained or pretrained_file is not None:
        model = pretrained_model(timm, name, in_channels, pretrained_file)
        model.reset_classifier(num_classes)
        if not on_meta(model):
            head = head_names(build, num_classes)
            kept = {k: v for k, v in model.state_dict().items() if k not in head}
            log_kept(f"timm {pretrained_file or name}", kept, sorted(head))
    else:
        model = build(num_classes)
    points = list(dict.fromkeys(info["module"] for info in getattr(model, "feature_info", [])))
    if points:
        model.feature_points = tuple(points)
    return model


def pretrained_model(
    timm: ModuleType, name: str, in_channels: int, pretrained_file: str | None
) -> nn.Module:
    """The model with its pretrained classifier, loaded by timm (first conv adapted to
    `in_channels` by timm: summed over RGB for one channel); one-line errors for missing
    weights and weights of another architecture."""
    overlay = None
    if pretrained_file is not None:
        path = Path(pretrained_file).expanduser()
        if not path.is_file():
            raise KdlabError(
                f"model.pretrained_file={pretrained_file}: no such file; give timm weights "
                "(.safetensors or a torch state dict)"
            )
        overlay = {"file": str(path)}
    else:
        check_has_weights(timm, name)
    try:
        with warnings.catch_warnings():
            if torch.get_default_device().type == "meta":  # the pre-flight: no-op copies
                warnings.simplefilter("ignore")
            return timm.create_model(
                name, pretrained=True, in_chans=in_channels, pretrained_cfg_overlay=overlay
            )
    except RuntimeError as error:  # load_state_dict: another architecture's tensors
        raise KdlabError(
            f"pretrained weights {pretrained_file or name} do not fit timm {name}: "
            f"{state_dict_problems(str(error))}; give weights of this architecture"
        ) from None
    except OSError as error:  # not cached, and no network (or HF_HUB_OFFLINE=1)
        raise KdlabError(not_cached(timm, name, error)) from None


def check_has_weights(timm: ModuleType, name: str) -> None:
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise KdlabError(
            f"timm has no pretrained weights for {name}: pick a model with weights "
            "(timm.list_models(pretrained=True)) or set model.pretrained_file=PATH"
        )


def state_dict_problems(message: str) -> str:
    """torch's multi-line load_state_dict error as one line: each problem, its first keys."""
    problems = [line.strip() for line in message.splitlines()[1:] if line.strip()]
    return "; ".join(p if len(p) < 160 else p[:157] + "..." for p in problems[:3]) or message


def not_cached(timm: ModuleType, name: str, error: OSError) -> str:
    """Where the weights were looked for, and the two ways to provide them offline."""
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg.hf_hub_id:
        from huggingface_hub import constants  # a dependency of timm

        repo = cfg.hf_hub_id
        place = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    else:
        repo, place = cfg.url, Path(torch.hub.get_dir()) / "checkpoints"
    reason = str(error).strip().splitlines()[0][:100] if str(error).strip() else "offline"
    return (
        f"timm weights {repo} are not in the cache ({place}) and cannot be downloaded "
        f"({reason}): fetch them once with network access (HF_HUB_OFFLINE=1 then uses the "
        "cache), or set model.pretrained_file=PATH to a local weights file"
    )
