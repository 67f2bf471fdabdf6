"""Data sets as device-resident (or streamed) batch loaders: `build_data` is the entry point,
`registry.DATASETS` lists what `data=NAME` can load."""

from kdlab.data.batch_loader import BatchLoader
from kdlab.data.build import DataBundle, build_data
from kdlab.data.registry import (
    DATASETS,
    check_data_settings,
    data_settings,
    dataset_names,
    dataset_spec,
)
from kdlab.data.settings import DataConfig

__all__ = [
    "DATASETS",
    "BatchLoader",
    "DataBundle",
    "DataConfig",
    "build_data",
    "check_data_settings",
    "data_settings",
    "dataset_names",
    "dataset_spec",
]
