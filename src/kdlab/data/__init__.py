"""Data sets as device-resident (or streamed) batch loaders: `build_data` is the entry point,
`registry.DATASETS` lists what `data=NAME` can load, `register_dataset` adds one from outside
kdlab (its loader returns a `Source` of `ImageSet`s)."""

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
