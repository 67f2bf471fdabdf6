"""kdlab: a config-driven command-line lab for knowledge distillation."""

__version__ = "0.1.0"
