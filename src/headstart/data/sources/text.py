"""Read text records from JSONL, CSV/TSV and plain-text files; every error names file and line.

Shared by every text task (classification, NER, QA, generation, pretraining). Readers yield
``(where, record)`` pairs where ``where`` is ``"<file>:<line>"`` for error messages and skips.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Iterator, Sequence

from headstart.data.errors import DataError, OnError, Skipped


def _lines(path: Path) -> Iterator[tuple[int, str | None, str | None]]:
    """(line number, text, decode error) per line; a bad byte sequence names its line."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield number, raw.decode("utf-8").rstrip("\r\n"), None
            except UnicodeDecodeError as err:
                yield number, None, f"not valid UTF-8 ({err.reason} at byte {err.start})"


def read_lines(path: str | Path, on_error: OnError = "raise", skip_blank: bool = True) -> Iterator[tuple[str, str | Skipped]]:
    """Plain text, one record per line."""
    path = Path(path)
    for number, text, error in _lines(path):
        where = f"{path}:{number}"
        if error is not None:
            if on_error == "skip":
                yield where, Skipped(where, error)
                continue
            raise DataError(f"{where}: {error}")
        if skip_blank and not text.strip():
            continue
        yield where, text


def read_jsonl(path: str | Path, on_error: OnError = "raise") -> Iterator[tuple[str, dict[str, Any] | Skipped]]:
    """One JSON object per line (blank lines ignored)."""
    for where, text in read_lines(path, on_error):
        if isinstance(text, Skipped):
            yield where, text
            continue
        try:
            record = json.loads(text)
            if not isinstance(record, dict):
                raise ValueError(f"expected a JSON object, got {type(record).__name__}")
        except ValueError as err:
            if on_error == "skip":
                yield where, Skipped(where, f"bad JSON ({err})")
                continue
            raise DataError(f"{where}: bad JSON ({err})") from err
        yield where, record


def read_csv(path: str | Path, delimiter: str | None = None, on_error: OnError = "raise") -> Iterator[tuple[str, dict[str, Any] | Skipped]]:
    """CSV or TSV with a header row (delimiter from the extension unless given)."""
    path = Path(path)
    delimiter = delimiter or ("\t" if path.suffix.lower() in (".tsv", ".tab") else ",")
    lines = list(read_lines(path, on_error, skip_blank=False))
    good = [(where, text) for where, text in lines if not isinstance(text, Skipped)]
    for where, text in lines:
        if isinstance(text, Skipped):
            yield where, text
    if not good:
        raise DataError(f"{path}: empty file (expected a header row)")
    reader = csv.reader(io.StringIO("\n".join(text for _, text in good)), delimiter=delimiter)
    header = next(reader)
    for (where, _), row in zip(good[1:], reader):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            message = f"{len(row)} fields, header has {len(header)}"
            if on_error == "skip":
                yield where, Skipped(where, message)
                continue
            raise DataError(f"{where}: {message}")
        yield where, dict(zip(header, row))


def read_records(path: str | Path, on_error: OnError = "raise") -> Iterator[tuple[str, dict[str, Any] | Skipped]]:
    """JSONL (.jsonl/.json lines) or CSV/TSV by extension."""
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return read_jsonl(path, on_error)
    if suffix in (".csv", ".tsv", ".tab"):
        return read_csv(path, on_error=on_error)
    raise DataError(f"{path}: unknown record format '{suffix}' (use .jsonl, .csv or .tsv)")


def require_columns(where: str, record: dict[str, Any], columns: Sequence[str]) -> None:
    """A missing or empty required column is an error naming the file, line and column."""
    for column in columns:
        if column not in record:
            raise DataError(f"{where}: missing column '{column}' (columns: {', '.join(record)})")
        value = record[column]
        if value is None or (isinstance(value, str) and not value.strip()):
            raise DataError(f"{where}: empty '{column}'")
