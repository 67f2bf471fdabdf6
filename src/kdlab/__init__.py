"""kdlab: a config-driven command-line lab for knowledge distillation.

From Python: `kdlab.load_run(path)` and `kdlab.run(command, overrides)` (see kdlab.api);
they are imported on first use, so `import kdlab` (and `kdlab --version`) stays cheap.
"""

from typing import Any

from kdlab.errors import KdlabError

__version__ = "0.1.0"
__all__ = ["KdlabError", "LoadedRun", "__version__", "load_run", "run"]
_API = ("LoadedRun", "load_run", "run")


def __getattr__(name: str) -> Any:
    if name in _API:
        from kdlab import api

        return getattr(api, name)
    raise AttributeError(f"module 'kdlab' has no attribute {name!r}")
