"""kdlab: a config-driven command-line lab for knowledge distillation.

From Python: `kdlab.load_run(path)` and `kdlab.run(command, overrides)` (see kdlab.api);
they are imported on first use, so `import kdlab` (and `kdlab --version`) stays cheap.
"""

from importlib import import_module
from typing import Any

from kdlab.errors import KdlabError

__version__ = "0.1.0"
__all__ = ["KdlabError", "LoadedRun", "__version__", "load_run", "run"]
_API = ("LoadedRun", "load_run", "run")


def __getattr__(name: str) -> Any:
    """The API on first use: imported by name at call time, so the package (whose
    __version__ every module reads) never imports the modules that import it."""
    if name in _API:
        return getattr(import_module("kdlab.api"), name)
    raise AttributeError(f"module 'kdlab' has no attribute {name!r}")
