"""Bad input is a clear error naming the file and row, or a counted skip (``data.on_error=skip``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, TypeVar

T = TypeVar("T")
OnError = Literal["raise", "skip"]


class DataError(ValueError):
    """Bad or missing input; the message starts with the file (and row) at fault."""


@dataclass(frozen=True)
class Skipped:
    """Stands in for an example that could not be loaded under ``on_error=skip``."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


def load_example(load: Callable[[], T], where: str, on_error: OnError) -> T | Skipped:
    """Run ``load``; a failure becomes a DataError naming ``where`` or, when skipping, a Skipped."""
    try:
        return load()
    except DataError as err:
        if on_error == "skip":
            return Skipped(where, str(err))
        raise
    except Exception as err:  # decoding libraries raise many types; all mean "this example is bad"
        message = f"{type(err).__name__}: {err}".splitlines()[0][:300]
        if on_error == "skip":
            return Skipped(where, message)
        raise DataError(f"{where}: {message}") from err


def split_skipped(samples: list[Any]) -> tuple[list[Any], list[str]]:
    """Separate loaded samples from Skipped markers (whose text goes into ``batch['_skipped']``)."""
    kept = [s for s in samples if not isinstance(s, Skipped)]
    skipped = [str(s) for s in samples if isinstance(s, Skipped)]
    return kept, skipped
