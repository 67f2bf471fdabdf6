"""The checks of a data set's class names: torch-free, so an image folder's (its folder names)
are checked by the CLI's first look at the overrides as well as by the pre-flight."""

from __future__ import annotations

from kdlab.errors import KdlabError


def check_classes(name: str, class_names: list[str]) -> None:
    """One class would train to 100% "successfully": refuse it (image folders: in the
    pre-flight already, by their folder names)."""
    if len(class_names) < 2:
        raise KdlabError(
            f"data={name} has {len(class_names)} class ({', '.join(class_names)}): a "
            "classifier needs 2 or more (an image folder: one folder per class under train/)"
        )
    for class_name in class_names:
        check_text_name(name, class_name)


def check_text_name(name: str, class_name: str) -> None:
    """A class name goes into UTF-8 records (summary.json, confusion.csv, the checkpoint, an
    export's metadata, figures, trackers): bytes that are not UTF-8 (a folder name Python
    holds as surrogates) cannot be written there faithfully, so the name must be renamed."""
    try:
        class_name.encode("utf-8")
    except UnicodeEncodeError:
        shown = class_name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise KdlabError(
            f"data={name} has a class named '{shown}', which is not valid UTF-8: rename that "
            "class folder to a UTF-8 name"
        ) from None
