"""User-facing errors: one line saying what is wrong and how to fix it (exit code 2)."""

import argparse
from typing import NoReturn


class KdlabError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors become one-line KdlabErrors (exit code 2), not a usage
    block: the same contract as every other kdlab error."""

    def error(self, message: str) -> NoReturn:
        raise KdlabError(f"{message} ({self.prog} --help)")
