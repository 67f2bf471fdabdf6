"""Data sets as device-resident (or streamed) batch loaders: `build_data` is the entry point,
`registry.DATASETS` lists what `data=NAME` can load, `register_dataset` adds one from outside
kdlab (its loader returns a `Source` of `ImageSet`s).

Its names are imported on first use (PEP 562), so `kdlab.data.names` is read without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kdlab.lazy import names_on_first_use

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
_HOMES = {  # the module each name of __all__ lives in
    "batch_loader": ("BatchLoader",),
    "build": ("DataBundle", "build_data"),
    "registry": (
        "DATASETS",
        "DatasetSpec",
        "check_batch_memory",
        "check_data_settings",
        "data_settings",
        "dataset_names",
        "dataset_spec",
        "register_dataset",
    ),
    "settings": ("DataConfig",),
    "source": ("ImageSet", "Source"),
}
__getattr__ = names_on_first_use(__name__, __all__, _HOMES)
