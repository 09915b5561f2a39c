"""Read text records from JSONL, CSV/TSV and plain-text files; every error names file and line.

Shared by every text task (classification, NER, QA, generation, pretraining). Readers yield
``(where, record)`` pairs where ``where`` is ``"<file>:<line>"`` for error messages and skips.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from headstart.data.errors import DataError, OnError, Skipped

# data.source -> the file suffixes a folder of records is read for (JSONL, CSV/TSV)
RECORD_SUFFIXES: dict[str, tuple[str, ...]] = {"jsonl": (".jsonl", ".json", ".ndjson"), "csv": (".csv", ".tsv")}


def _lines(path: Path) -> Iterator[tuple[int, str | None, str | None]]:
    """(line number, text, decode error) per line; a bad byte sequence names its line."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                # utf-8-sig on line 1: a byte-order mark (Excel, Notepad) is not text, and in a CSV
                # header it would rename the first column
                yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n"), None
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


class _LineFeed:
    """Lines handed to csv.reader one at a time, counting how many each record took."""

    def __init__(self, lines: list[tuple[str, str]]) -> None:
        self.lines, self.pos = lines, 0

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        if self.pos >= len(self.lines):
            raise StopIteration
        self.pos += 1
        return self.lines[self.pos - 1][1] + "\n"


def read_csv(path: str | Path, delimiter: str | None = None, on_error: OnError = "raise") -> Iterator[tuple[str, dict[str, Any] | Skipped]]:
    """CSV or TSV with a header row (delimiter from the extension unless given).

    Records are parsed one at a time from their first line, so a bad line (a stray quote would
    otherwise swallow every line after it into one field) costs only itself under ``skip``.
    """
    path = Path(path)
    delimiter = delimiter or ("\t" if path.suffix.lower() in (".tsv", ".tab") else ",")
    lines = list(read_lines(path, on_error, skip_blank=False))
    good = [(where, text) for where, text in lines if not isinstance(text, Skipped)]
    for where, text in lines:
        if isinstance(text, Skipped):
            yield where, text
    if not good:
        raise DataError(f"{path}: empty file (expected a header row)")
    feed = _LineFeed(good)
    header = next(csv.reader(feed, delimiter=delimiter))
    while feed.pos < len(good):
        first = feed.pos
        where = good[first][0]
        try:
            row = next(csv.reader(feed, delimiter=delimiter, strict=True))
            if len(row) != len(header) and any(cell.strip() for cell in row):
                raise csv.Error(f"{len(row)} fields, header has {len(header)}")
        except csv.Error as err:
            message = str(err)
            if "fields, header has" not in message:
                message = f"malformed CSV record ({err}; an unclosed quote?)"
            if on_error == "skip":
                feed.pos = first + 1  # resume at the next line: only this one is lost
                yield where, Skipped(where, message)
                continue
            raise DataError(f"{where}: {message}") from None
        if any(cell.strip() for cell in row):
            yield where, dict(zip(header, row))


def read_records(path: str | Path, on_error: OnError = "raise") -> Iterator[tuple[str, dict[str, Any] | Skipped]]:
    """JSONL (.jsonl/.json lines) or CSV/TSV by extension."""
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return read_jsonl(path, on_error)
    if suffix in (".csv", ".tsv", ".tab"):
        return read_csv(path, on_error=on_error)
    raise DataError(f"{path}: unknown record format '{suffix}' (use .jsonl, .csv or .tsv)")


def require_columns(where: str, record: dict[str, Any], columns: Sequence[str], keys: Sequence[str | None] = ()) -> None:
    """A missing or empty required column is an error naming the file, line and column, and when
    ``keys`` gives it (one per column), the config key that names another column."""
    for i, column in enumerate(columns):
        if column not in record:
            key = keys[i] if i < len(keys) else None
            hint = f"; set data.{key}=<column> if it has another name" if key else ""
            raise DataError(f"{where}: missing column '{column}' (columns: {', '.join(record)}){hint}")
        value = record[column]
        if value is None or (isinstance(value, str) and not value.strip()):
            raise DataError(f"{where}: empty '{column}'")


def field(record: Any, column: str) -> Any:
    """``record[column]``; a dotted column reads nested fields (``translation.en``)."""
    value = record
    for part in column.split("."):
        value = value[part]
    return value


def record_texts(file: Path, column: str, on_error: OnError) -> Iterator[tuple[str, str | Skipped]]:
    """(where, text) of each JSONL/CSV record's ``column``; a record without it is a DataError
    naming ``file:line``, or under ``on_error=skip`` a Skipped."""
    for where, record in read_records(file, on_error):
        if isinstance(record, Skipped):
            yield where, record
            continue
        try:
            require_columns(where, record, [column])
        except DataError as err:
            if on_error != "skip":
                raise
            yield where, Skipped(where, str(err).split(": ", 1)[-1])
            continue
        yield where, str(field(record, column))
