"""The export formats: how each writes a model with its metadata, and how each is loaded back
by its own runtime to check it (onnxruntime, torch.jit, a fresh model from the registry).

Metadata is a flat dict of JSON values. ONNX's `metadata_props` and safetensors'
`__metadata__` hold strings only, so there every value is stored JSON-encoded (strings
too); TorchScript keeps the whole dict as one JSON file, `kdlab.json`, in its `_extra_files`.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from kdlab.deploy.selected import INPUT_NAME, OUTPUT_NAME
from kdlab.errors import KdlabError
from kdlab.models import build_model

EXTRA_FILE = "kdlab.json"  # TorchScript: the metadata's file inside the archive
ONNX_OPSET = 17  # supported by onnxruntime since 1.11 and by every exporter of torch 2.x

Metadata = dict[str, Any]
Runner = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Loaded:
    """An exported file loaded back: a function from input batch to logits, its metadata."""

    run: Runner
    metadata: Metadata


@dataclass(frozen=True)
class ExportFormat:
    """One format: its file suffix, the modules it needs, how it saves and loads."""

    name: str
    suffix: str
    runtime: str  # what loads it back for the check
    save: Callable[[nn.Module, torch.Tensor, Metadata, BinaryIO], None]
    load: Callable[[Path], Loaded]
    needs: tuple[str, ...] = ()  # importable modules; missing: how to install them
    install: str = ""

    def check_available(self) -> None:
        for module in self.needs:
            try:
                importlib.import_module(module)
            except ImportError:
                raise KdlabError(
                    f"--format {self.name} needs {' and '.join(self.needs)}: {self.install}"
                ) from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch 2.14 deprecates TorchScript and the TorchScript-based ONNX exporter (both still
    work; the new exporter needs onnxscript): keep their notices off the user's screen."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def encoded(metadata: Metadata) -> dict[str, str]:
    return {key: json.dumps(value) for key, value in metadata.items()}


def decoded(strings: dict[str, str]) -> Metadata:
    return {key: json.loads(value) for key, value in strings.items()}


def save_onnx(model: nn.Module, example: torch.Tensor, metadata: Metadata, file: BinaryIO) -> None:
    """The legacy (TorchScript-based) exporter: the torch.export one needs onnxscript. The
    batch axis is dynamic."""
    import onnx

    buffer = io.BytesIO()
    batch = {0: "batch"}
    with _quiet():
        torch.onnx.export(
            model,
            (example,),
            buffer,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: batch, OUTPUT_NAME: batch},
            opset_version=ONNX_OPSET,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in encoded(metadata).items():
        proto.metadata_props.add(key=key, value=value)
    file.write(proto.SerializeToString())


def load_onnx(path: Path) -> Loaded:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(batch: torch.Tensor) -> torch.Tensor:
        (logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch.numpy()})
        return torch.from_numpy(logits)

    return Loaded(run, decoded(session.get_modelmeta().custom_metadata_map))


def save_torchscript(
    model: nn.Module, example: torch.Tensor, metadata: Metadata, file: BinaryIO
) -> None:
    """Traced (the zoo's models have no data-dependent control flow; the check would see)."""
    with _quiet():
        traced = torch.jit.trace(model, example)
        torch.jit.save(traced, file, _extra_files={EXTRA_FILE: json.dumps(metadata)})


def load_torchscript(path: Path) -> Loaded:
    extra = {EXTRA_FILE: ""}
    with _quiet():
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return Loaded(module, json.loads(extra[EXTRA_FILE]))


def save_safetensors(
    model: nn.Module, example: torch.Tensor, metadata: Metadata, file: BinaryIO
) -> None:
    """The state_dict's tensors; the metadata names the registry model they fit."""
    from safetensors.torch import save

    tensors = {key: t.detach().contiguous() for key, t in model.state_dict().items()}
    file.write(save(tensors, metadata=encoded(metadata)))


def load_safetensors(path: Path) -> Loaded:
    """The tensors loaded into a fresh model built from the registry by the metadata alone."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as file:
        metadata = decoded(file.metadata())
        tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118
    options = dict(metadata["model_config"])
    arch = options.pop("arch")
    model = build_model(arch, metadata["num_classes"], metadata["channels"], **options)
    model.load_state_dict(tensors)
    return Loaded(model.eval(), metadata)


ONNX_INSTALL = "pip install 'kdlab[onnx]' (or pick --format torchscript or safetensors)"

FORMATS: dict[str, ExportFormat] = {
    "onnx": ExportFormat(
        "onnx", ".onnx", "onnxruntime", save_onnx, load_onnx, ("onnx", "onnxruntime"), ONNX_INSTALL
    ),
    "torchscript": ExportFormat(
        "torchscript", ".torchscript.pt", "torch.jit.load", save_torchscript, load_torchscript
    ),
    "safetensors": ExportFormat(
        "safetensors",
        ".safetensors",
        "safetensors in a fresh registry model",
        save_safetensors,
        load_safetensors,
    ),
}
