"""kdlab: a config-driven command-line lab for knowledge distillation.

From Python: `kdlab.load_run(path)` and `kdlab.run(command, overrides)` (see kdlab.api);
they are imported on first use, so `import kdlab` (and `kdlab --version`) stays cheap.
"""

from importlib import import_module
from typing import Any

from kdlab.errors import KdlabError
from kdlab.version import __version__

__all__ = ["KdlabError", "LoadedRun", "__version__", "load_run", "run"]
_API = ("LoadedRun", "load_run", "run")


def __getattr__(name: str) -> Any:
    """The API on first use: `import kdlab` (and `kdlab --version`) stays cheap."""
    if name in _API:
        return getattr(import_module("kdlab.api"), name)
    raise AttributeError(f"module 'kdlab' has no attribute {name!r}")
