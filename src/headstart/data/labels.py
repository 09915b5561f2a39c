"""Class names as the data spells them: the same class written two ways is never two classes.

A label read from a file is stripped of surrounding whitespace (``"pos "`` is ``"pos"``); the
spellings that were merged are named once in a warning. Names that differ only in case
(``Pos`` / ``pos``, folders ``Cat/`` and ``cat/``) are an error naming them, unless
``data.case_sensitive_labels=true`` says they really are different classes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from headstart.data.errors import DataError

log = logging.getLogger(__name__)


def clean_label(value: object) -> str:
    """A label as a class name: its text without surrounding whitespace."""
    return str(value).strip()


def check_spellings(raw: Iterable[object], where: str, case_sensitive: bool = False) -> None:
    """``raw``: the labels as read (before :func:`clean_label`) from ``where`` (a file or folder).

    Warns once listing the spellings that whitespace stripping merged; raises a DataError for
    class names that differ only in case unless ``case_sensitive``."""
    spellings: dict[str, set[str]] = {}
    for value in raw:
        spellings.setdefault(clean_label(value), set()).add(str(value))
    merged = {name: sorted(found) for name, found in spellings.items() if len(found) > 1}
    if merged:
        shown = "; ".join(f"{' / '.join(repr(s) for s in found)} -> {name!r}" for name, found in sorted(merged.items()))
        log.warning("%s: labels with surrounding spaces merged: %s", where, shown)
    if case_sensitive:
        return
    by_case: dict[str, list[str]] = {}
    for name in sorted(spellings):
        by_case.setdefault(name.casefold(), []).append(name)
    clashes = [names for names in by_case.values() if len(names) > 1]
    if clashes:
        shown = "; ".join(" / ".join(repr(n) for n in names) for names in clashes)
        raise DataError(
            f"{where}: class names that differ only in case: {shown}; rename them to one spelling, "
            "or set data.case_sensitive_labels=true if they are different classes"
        )
