"""User-facing errors: one line saying what is wrong and how to fix it (exit code 2)."""


class KdlabError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""
