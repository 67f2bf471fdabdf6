"""Data sets as device-resident (or streamed) batch loaders: `build_data` is the entry point."""

from kdlab.data.build import DataBundle, build_data
from kdlab.data.loader import BatchLoader

__all__ = ["BatchLoader", "DataBundle", "build_data"]
