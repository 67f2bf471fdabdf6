"""`kdlab <command> ...`: the entry point (cli.main) and the commands (cli.commands)."""

from kdlab.cli.main import main

__all__ = ["main"]
