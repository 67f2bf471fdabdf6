"""Any torchvision classification model by name, randomly initialised or from pretrained
weights (`model.weights=`: a torchvision weights name such as DEFAULT, or a state-dict file).

Named weights come from torch's hub cache (`$TORCH_HOME/hub/checkpoints/<file>`, the file
torchvision itself would download), downloaded there when missing and the network allows.
"""

from __future__ import annotations

import difflib
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from kdlab.errors import KdlabError
from kdlab.models.channels import first_conv, with_input_channels
from kdlab.models.pretrained import head_names, load_pretrained, on_meta, read_state_dict

log = logging.getLogger("kdlab")

EXAMPLES = ("resnet18", "resnet50", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny")
FILE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar")


def torchvision_model(
    num_classes: int, name: str = "resnet18", in_channels: int = 3, weights: str | None = None
) -> nn.Module:
    """`torchvision.models.get_model(name, num_classes=...)`, with `weights` loaded into all
    but its new head, its first conv rebuilt for `in_channels` other than RGB's 3 (pretrained
    RGB filters summed and spread over the channels)."""
    import torchvision  # only paid for when a torchvision model is asked for

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        close = difflib.get_close_matches(name, available, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise KdlabError(
            f"unknown torchvision model '{name}'{hint}: choose a classifier such as "
            f"{', '.join(EXAMPLES)}; torchvision.models.list_models(module=torchvision.models) "
            "lists them all (model.name=NAME)"
        )

    def build(classes: int) -> nn.Module:
        return torchvision.models.get_model(name, weights=None, num_classes=classes)

    model = build(num_classes)
    if weights is not None:
        path, source = weights_file(name, str(weights))
        state = read_state_dict(path)
        load_pretrained(model, state, head_names(build, num_classes), source, f"torchvision {name}")
        if in_channels != 3 and not on_meta(model):
            log.info(
                "first conv '%s': the pretrained RGB filters summed, then spread over %d "
                "input channel(s)",
                first_conv(model)[0],
                in_channels,
            )
    return with_input_channels(model, in_channels)


def weights_file(name: str, weights: str) -> tuple[Path, str]:
    """The state-dict file `model.weights` names, and how to name it in messages."""
    path = Path(weights).expanduser()
    if path.is_file():
        return path, str(path)
    if os.sep in weights or "/" in weights or weights.endswith(FILE_SUFFIXES):
        raise KdlabError(
            f"model.weights={weights}: no such file; give a state-dict file, or a torchvision "
            "weights name such as DEFAULT"
        )
    chosen = weights_entry(name, weights)
    source = f"{type(chosen).__name__}.{chosen.name}"
    return cached_or_downloaded(chosen.url, source), source


def weights_entry(name: str, weights: str) -> Any:
    """The torchvision weights enum member `weights` names for model `name` (DEFAULT too)."""
    import torchvision

    entries = torchvision.models.get_model_weights(name)
    try:
        return entries.verify(weights)
    except (KeyError, ValueError):
        names = ", ".join(["DEFAULT", *(entry.name for entry in entries)])
        raise KdlabError(
            f"unknown weights '{weights}' for torchvision {name}: choose one of {names}, or "
            "give a state-dict file (model.weights=NAME|PATH)"
        ) from None


def cached_or_downloaded(url: str, source: str) -> Path:
    """The file in torch's hub cache, downloaded (hash-checked, atomically) when missing."""
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    path = cache / os.path.basename(urlparse(url).path)
    if path.is_file():
        return path
    log.info("downloading %s to %s", url, path)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        digest = torch.hub.HASH_REGEX.search(path.name)
        torch.hub.download_url_to_file(url, str(path), digest.group(1) if digest else None)
    except (OSError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else "failed"
        raise KdlabError(
            f"pretrained weights {source}: {path.name} is not in the cache and cannot be "
            f"downloaded ({reason}): put {path.name} (from {url}) into {cache}/, or give a "
            "state-dict file (model.weights=PATH)"
        ) from None
    return path
