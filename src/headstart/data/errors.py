"""Bad input is a clear error naming the file and row, or a counted skip (``data.on_error=skip``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")
OnError = Literal["raise", "skip"]
log = logging.getLogger(__name__)


class DataError(ValueError):
    """Bad or missing input; the message starts with the file (and row) at fault."""


@dataclass(frozen=True)
class Skipped:
    """Stands in for an example that could not be loaded under ``on_error=skip``."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


def report_unpaired(files: Sequence[Path | str], what: str, on_error: OnError) -> None:
    """Files a source lists but cannot use (a label file without its image, an image without its
    mask): under ``raise`` a DataError naming the first and the count; under ``skip`` one warning
    with the count. Nothing is left out without a word."""
    if not files:
        return
    count = f" ({len(files)} such files)" if len(files) > 1 else ""
    if on_error == "raise":
        raise DataError(f"{files[0]}: {what}{count}; add it, or set data.on_error=skip to leave such files out")
    log.warning("data.on_error=skip: left out %d files: %s (first %s)", len(files), what, files[0])


def load_example(load: Callable[[], T], where: str, on_error: OnError) -> T | Skipped:
    """Run ``load``; a failure becomes a DataError naming ``where`` or, when skipping, a Skipped."""
    try:
        return load()
    except DataError as err:
        if on_error == "skip":  # the message usually starts with ``where`` already: not twice
            reason = str(err)
            return Skipped(where, reason[len(where) + 2:] if reason.startswith(f"{where}: ") else reason)
        raise
    except Exception as err:  # decoding libraries raise many types; all mean "this example is bad"
        message = f"{type(err).__name__}: {err}".splitlines()[0][:300]
        if on_error == "skip":
            return Skipped(where, message)
        raise DataError(f"{where}: {message}") from err


RIDERS = "_skipped"  # key of an example dict carrying Skipped markers found at setup time


def split_skipped(samples: list[Any]) -> tuple[list[Any], list[str]]:
    """Separate loaded samples from Skipped markers (whose text goes into ``batch['_skipped']``).

    Markers may also ride on a kept example (:func:`ride_along`); they are taken off it here.
    """
    kept, skipped = [], []
    for sample in samples:
        if isinstance(sample, Skipped):
            skipped.append(str(sample))
        elif isinstance(sample, dict) and RIDERS in sample:
            skipped += [str(s) for s in sample[RIDERS]]
            kept.append({k: v for k, v in sample.items() if k != RIDERS})
        else:
            kept.append(sample)
    return kept, skipped


def ride_along(items: list[Any], split: str = "a") -> list[Any]:
    """Attach the Skipped markers of a split read at setup time to its kept examples (dicts).

    A marker that stood alone as a dataset item could fill a whole batch with nothing to train
    on (a task then fails on the empty batch); riding on a kept example, it still reaches
    ``batch['_skipped']`` (and the skip count) once per epoch. A split where every example was
    skipped is a DataError naming the first bad one: there is nothing left to use.
    """
    markers = [it for it in items if isinstance(it, Skipped)]
    kept = [it for it in items if not isinstance(it, Skipped)]
    if not markers:
        return kept
    if not kept:
        raise DataError(f"{split} split: all {len(markers)} examples are bad (first: {markers[0]})")
    riders: list[list[Skipped]] = [[] for _ in kept]
    for j, marker in enumerate(markers):
        riders[j % len(kept)].append(marker)
    return [{**it, RIDERS: r} if r else it for it, r in zip(kept, riders)]
