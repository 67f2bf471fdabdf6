"""Data sets as device-resident (or streamed) batch loaders: `build_data` is the entry point,
`registry.DATASETS` lists what `data=NAME` can load, `register_dataset` adds one from outside
kdlab (its loader returns a `Source` of `ImageSet`s).

Its names are imported on first use (PEP 562), so `kdlab.data.names` is read without torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kdlab.data.batch_loader import BatchLoader
    from kdlab.data.build import DataBundle, build_data
    from kdlab.data.registry import (
        DATASETS,
        DatasetSpec,
        check_batch_memory,
        check_data_settings,
        data_settings,
        dataset_names,
        dataset_spec,
        register_dataset,
    )
    from kdlab.data.settings import DataConfig
    from kdlab.data.source import ImageSet, Source

__all__ = [
    "DATASETS",
    "BatchLoader",
    "DataBundle",
    "DataConfig",
    "DatasetSpec",
    "ImageSet",
    "Source",
    "build_data",
    "check_batch_memory",
    "check_data_settings",
    "data_settings",
    "dataset_names",
    "dataset_spec",
    "register_dataset",
]
_MODULES = ("registry", "settings", "build", "batch_loader", "source")  # where they are defined


def __getattr__(name: str) -> Any:
    if name in __all__:
        for module in _MODULES:
            found = import_module(f"kdlab.data.{module}")
            if name in vars(found):
                return vars(found)[name]
    raise AttributeError(f"module 'kdlab.data' has no attribute '{name}'")
