"""Where kdlab finds its Hydra configs, installed or in a source checkout."""

from __future__ import annotations

from pathlib import Path

# In a run dir: flock-ed by the one process writing the run (kdlab.runs.run_dir), holds its pid.
RUN_LOCK = ".kdlab.lock"


def config_dir() -> Path:
    """The `conf/` directory: shipped inside the wheel, or the checkout's top-level one."""
    packaged = Path(__file__).parent / "conf"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "conf"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"kdlab's configs are missing: looked in {packaged} and {checkout}")
