"""Reading catalog files row by row, so that one bad row is reported (file, line, reason) and
the rest still arrives."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .._errors import LtrrError

MAX_ROW_BYTES = 1_000_000
MAX_FIELD_CHARS = 32_000


class Rejection(BaseModel):
    """A row that was not ingested, and why."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One parsed row with where it came from."""

    file: str
    line: int
    values: dict[str, Any]

    @property
    def origin(self) -> str:
        return f"{Path(self.file).name}:{self.line}"


def _has_invalid_utf8(text: str) -> bool:
    # Files are decoded with surrogateescape: undecodable bytes become lone surrogates. A JSON
    # escape ("\ud800") can make one too; no encoder, hash or OpenSearch accepts them.
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _check_value(name: str, value: Any) -> str | None:
    if isinstance(value, str):
        if _has_invalid_utf8(value):
            return f"field {name!r} is not valid UTF-8"
        if "\x00" in value:
            return f"field {name!r} contains a NUL character"
        if len(value) > MAX_FIELD_CHARS:
            return f"field {name!r} is {len(value)} characters long (limit {MAX_FIELD_CHARS})"
    elif isinstance(value, float) and not math.isfinite(value):
        return f"field {name!r} is {value} (not a finite number)"
    elif isinstance(value, list):
        for item in value:
            if problem := _check_value(name, item):
                return problem
    elif isinstance(value, dict):
        for key, item in value.items():
            if problem := _check_value(f"{name}.{key}", item):
                return problem
    return None


def read_csv(path: Path) -> Iterator[SourceRow | Rejection]:
    """Rows of a CSV file with a header line; a row with the wrong number of columns, invalid
    UTF-8 or oversize values becomes a Rejection."""
    file = str(path)
    try:
        handle = path.open(encoding="utf-8", errors="surrogateescape", newline="")
    except OSError as exc:
        raise LtrrError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        reader = csv.reader(handle, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise LtrrError(f"{path}: unreadable CSV header: {exc}") from None
        if _has_invalid_utf8("".join(header)):
            raise LtrrError(f"{path}: the CSV header is not valid UTF-8")
        header = [h.strip().lstrip("\ufeff") for h in header]
        line = reader.line_num
        while True:
            start = line + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                line = reader.line_num
                yield Rejection(file=file, line=start, reason=f"malformed CSV: {exc}")
                continue
            line = reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                yield Rejection(
                    file=file,
                    line=start,
                    reason=f"expected {len(header)} columns, found {len(cells)}",
                )
                continue
            values = dict(zip(header, cells, strict=True))
            if problem := _row_problem(values):
                yield Rejection(file=file, line=start, reason=problem)
                continue
            yield SourceRow(file=file, line=start, values=values)


def read_jsonl(path: Path) -> Iterator[SourceRow | Rejection]:
    """Objects of a JSON Lines file; a line that is not a JSON object becomes a Rejection."""
    file = str(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise LtrrError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            if len(raw) > MAX_ROW_BYTES:
                yield Rejection(
                    file=file,
                    line=number,
                    reason=f"line is {len(raw)} bytes (limit {MAX_ROW_BYTES})",
                )
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield Rejection(file=file, line=number, reason="line is not valid UTF-8")
                continue
            try:
                values = json.loads(text)
            except ValueError as exc:
                yield Rejection(file=file, line=number, reason=f"invalid JSON: {exc}")
                continue
            except RecursionError:
                yield Rejection(file=file, line=number, reason="JSON nested too deeply")
                continue
            if not isinstance(values, dict):
                yield Rejection(file=file, line=number, reason="line is not a JSON object")
                continue
            if problem := _row_problem(values):
                yield Rejection(file=file, line=number, reason=problem)
                continue
            yield SourceRow(file=file, line=number, values=values)


def _row_problem(values: dict[str, Any]) -> str | None:
    for name, value in values.items():
        if _has_invalid_utf8(str(name)) or "\x00" in str(name):
            return "a column name is not valid UTF-8 or contains a NUL character"
        if problem := _check_value(str(name), value):
            return problem
    return None


def read_rows(path: Path) -> Iterator[SourceRow | Rejection]:
    """CSV or JSON Lines, chosen by the file extension."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv(path)
    if suffix in (".jsonl", ".ndjson"):
        return read_jsonl(path)
    raise LtrrError(f"{path}: unknown file type {suffix!r}; expected .csv, .jsonl or .ndjson")
