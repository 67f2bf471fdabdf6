"""The base of every method's `loss` settings: torch-free, so the run schemas
(kdlab.runs.schema) and the CLI's first look at the overrides (kdlab.runs.screen) do without
the methods (kdlab.methods.base generates each method's subclass)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LossConfig:
    """`loss=NAME`: the method; each method's generated settings class adds its `loss.KEY`s."""

    name: str = "kd"

    def check(self) -> None:
        """The method's own rules on its settings beyond `>= 0` and its declared bounds
        (`Method.check`; a one-line KdlabError)."""
