"""User-facing errors: one line saying what is wrong and how to fix it (exit code 2)."""

import argparse
import re
from collections.abc import Iterable
from typing import NoReturn


class KdlabError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors become one-line KdlabErrors (exit code 2), not a usage
    block: the same contract as every other kdlab error."""

    def error(self, message: str) -> NoReturn:
        raise KdlabError(f"{message} ({self.prog} --help)")


def check_new_name(what: str, group: str, name: str, taken: Iterable[str]) -> None:
    """A name code outside kdlab registers (`register_model`, `register_dataset`): typed as
    `group=NAME` on the command line, so letters, digits and _, and not a taken one."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise KdlabError(
            f"cannot register {what} '{name}': {group}=NAME takes letters, digits and _ only "
            "(not starting with a digit): register it under such a name"
        )
    if name in taken:
        raise KdlabError(
            f"cannot register {what} '{name}': {group}={name} is taken (built in, or registered "
            "by another plugin): register it under another name"
        )
