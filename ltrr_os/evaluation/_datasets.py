"""Judged query sets: the file formats `ltrr evaluate` reads (queries TSV, TREC qrels, documents
JSON Lines) and readers for the Cranfield and CISI test collections that produce them.

The collections use the SMART layout: a record starts at `.I <number>` and each field at a marker
line (`.T`, `.A`, `.W`, ...) followed by its text lines.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import LtrrError

_MARKER = re.compile(r"\.([A-Z])(?:[ \t]+(.+))?")
_INTEGER = re.compile(r"-?[0-9]+")

# cranqrel grades run 1 (most relevant) to 4 (minimal interest); TREC grades grow with relevance.
_CRANFIELD_GRADES = {1: 4, 2: 3, 3: 2, 4: 1}
_CRANFIELD_NOT_RELEVANT = -1


@dataclass(frozen=True)
class JudgedCollection:
    """A test collection in the project's formats: documents shaped for the `documents` catalog
    schema, (query_id, text) pairs and (query_id, doc_id, grade) judgments, grade > 0 relevant."""

    name: str
    documents: list[dict[str, Any]]
    queries: list[tuple[str, str]]
    qrels: list[tuple[str, str, int]]


@dataclass
class _Record:
    id: str
    line: int
    fields: dict[str, list[str]]


def _error(path: Path, line: int, reason: str) -> LtrrError:
    return LtrrError(f"{path}:{line}: {reason}")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered lines without trailing whitespace (so CRLF files read like LF ones); invalid UTF-8
    is reported with its line instead of surfacing as a UnicodeDecodeError."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise LtrrError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _error(path, number, f"invalid UTF-8 at byte {exc.start}") from None
            if number == 1:
                text = text.removeprefix("\ufeff")
            yield number, text.rstrip()


def _columns(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Whitespace-separated columns of the non-blank lines."""
    for number, line in _lines(path):
        if line:
            yield number, line.split()


def _integer(path: Path, line: int, value: str, what: str) -> int:
    # Stricter than int(), which also takes "1_0", "+1" and non-ASCII digits.
    if _INTEGER.fullmatch(value) is None:
        raise _error(path, line, f"{what} {value!r} is not an integer")
    return int(value)


def _collapse(text: str) -> str:
    """One line with single spaces: how titles, authors and queries are stored and written."""
    return " ".join(text.split())


def _read_records(path: Path, allowed: str, ignored: str = "") -> list[_Record]:
    """The records of a SMART-format file. A marker already seen in the record does not open a new
    field: CISI repeats `.A` once per author, and Cranfield documents 240, 576 and 578 carry stray
    `.A`/`.B`/`.W` lines in the middle of their abstracts, whose text belongs to the abstract."""
    records: list[_Record] = []
    first_line: dict[str, int] = {}
    field: list[str] | None = None
    for number, line in _lines(path):
        match = _MARKER.fullmatch(line)
        if match is None:
            if field is not None:
                field.append(line)
            elif records and line:
                reason = f"text in record {records[-1].id} before its first field marker"
                raise _error(path, number, reason)
            elif line:
                raise _error(path, number, "text before the first .I")
            continue
        letter, argument = match.groups()
        if letter == "I":
            if argument is None or not argument.isascii() or not argument.isdigit():
                raise _error(path, number, f".I needs a record number, found {line!r}")
            record_id = str(int(argument))
            if record_id in first_line:
                first = first_line[record_id]
                raise _error(path, number, f"duplicate record {record_id} (first at line {first})")
            first_line[record_id] = number
            records.append(_Record(record_id, number, {}))
            field = None
            continue
        if not records:
            raise _error(path, number, f"field marker .{letter} before the first .I")
        if letter not in allowed + ignored:
            expected = ", ".join(f".{known}" for known in allowed + ignored)
            raise _error(path, number, f"unknown field marker .{letter} (expected {expected})")
        if argument is not None:
            raise _error(path, number, f"unexpected text after .{letter}: {argument!r}")
        fields = records[-1].fields
        if letter not in fields:
            fields[letter] = []
            field = fields[letter]
    for record in records:
        for letter in ignored:
            record.fields.pop(letter, None)
    return records


def _document(path: Path, record: _Record, author_separator: str) -> dict[str, Any] | None:
    """A catalog document, or None for a record with no text at all (Cranfield 471 and 995 are
    empty in the distributed file: there is nothing to index, and the schema requires a title)."""
    fields = record.fields
    title = _collapse(" ".join(fields.get("T", [])))
    body = "\n".join(fields.get("W", [])).strip()
    authors = [_collapse(line) for line in fields.get("A", []) if line]
    author = author_separator.join(authors)
    bibliography = _collapse(" ".join(fields.get("B", [])))
    if not title:
        if body or author or bibliography:
            raise _error(path, record.line, f"record {record.id} has no title")
        return None
    document: dict[str, Any] = {"id": record.id, "entity_type": "document", "title": title}
    for key, value in (("body", body), ("author", author), ("bibliography", bibliography)):
        if value:
            document[key] = value
    return document


def _query_text(path: Path, record: _Record) -> str:
    """The `.W` text, after the `.T` title when there is one (CISI queries 58-112 are articles)."""
    text = _collapse(" ".join([*record.fields.get("T", []), *record.fields.get("W", [])]))
    if not text:
        raise _error(path, record.line, f"query {record.id} has no text")
    return text


def _check_pair(
    path: Path, line: int, pair: tuple[str, str], first_line: dict[tuple[str, str], int]
) -> None:
    if pair in first_line:
        first = first_line[pair]
        raise _error(
            path,
            line,
            f"duplicate judgment of {pair[1]} for query {pair[0]} (first at line {first})",
        )
    first_line[pair] = line


def read_cranfield(directory: Path) -> JudgedCollection:
    """Cranfield from cran.all.1400, cran.qry and cranqrel.

    cranqrel numbers the queries 1..225 by their position in cran.qry, whose own `.I` numbers are
    not sequential, so a query's id is its position. Grades map to TREC order (1->4, 2->3, 3->2,
    4->1); -1 lines (one per query, "not relevant") are dropped, as unjudged documents already
    count as not relevant. The two empty documents (471, 995) are left out.
    """
    documents_path = directory / "cran.all.1400"
    documents = [
        document
        for record in _read_records(documents_path, allowed="TABW")
        if (document := _document(documents_path, record, author_separator=" ")) is not None
    ]
    queries_path = directory / "cran.qry"
    queries = [
        (str(position), _query_text(queries_path, record))
        for position, record in enumerate(_read_records(queries_path, allowed="W"), start=1)
    ]
    qrels_path = directory / "cranqrel"
    qrels: list[tuple[str, str, int]] = []
    first_line: dict[tuple[str, str], int] = {}
    for number, columns in _columns(qrels_path):
        if len(columns) != 3:
            reason = f"expected 3 columns (query, document, grade), found {len(columns)}"
            raise _error(qrels_path, number, reason)
        position = _integer(qrels_path, number, columns[0], "query number")
        if not 1 <= position <= len(queries):
            reason = f"query number {position} is not between 1 and {len(queries)}"
            raise _error(qrels_path, number, reason)
        query_id = str(position)
        doc_id = str(_integer(qrels_path, number, columns[1], "document id"))
        grade = _integer(qrels_path, number, columns[2], "grade")
        _check_pair(qrels_path, number, (query_id, doc_id), first_line)
        if grade == _CRANFIELD_NOT_RELEVANT:
            continue
        if grade not in _CRANFIELD_GRADES:
            raise _error(qrels_path, number, f"grade {grade} is not one of 1, 2, 3, 4, -1")
        qrels.append((query_id, doc_id, _CRANFIELD_GRADES[grade]))
    return JudgedCollection("cranfield", documents, queries, qrels)


def read_cisi(directory: Path) -> JudgedCollection:
    """CISI from CISI.ALL, CISI.QRY and CISI.REL.

    Authors (one per line, under one `.A` or one `.A` each) are joined with "; "; `.B` holds the
    year. Cross-references (`.X`) and the keywords and classification codes one document carries
    (`.K`, `.C`) are not part of the catalog schema and are skipped. Every CISI.REL pair is
    relevant (grade 1). Only 76 of the 112 queries are judged; all are kept, and evaluation skips
    the unjudged ones.
    """
    documents_path = directory / "CISI.ALL"
    documents = [
        document
        for record in _read_records(documents_path, allowed="TABW", ignored="XKC")
        if (document := _document(documents_path, record, author_separator="; ")) is not None
    ]
    queries_path = directory / "CISI.QRY"
    queries = [
        (record.id, _query_text(queries_path, record))
        for record in _read_records(queries_path, allowed="TABW")
    ]
    query_ids = {query_id for query_id, _ in queries}
    qrels_path = directory / "CISI.REL"
    qrels: list[tuple[str, str, int]] = []
    first_line: dict[tuple[str, str], int] = {}
    for number, columns in _columns(qrels_path):
        if len(columns) != 4:
            reason = f"expected 4 columns (query, document, 0, 0.0), found {len(columns)}"
            raise _error(qrels_path, number, reason)
        query_id = str(_integer(qrels_path, number, columns[0], "query id"))
        if query_id not in query_ids:
            raise _error(qrels_path, number, f"query {query_id} is not in {queries_path.name}")
        doc_id = str(_integer(qrels_path, number, columns[1], "document id"))
        _check_pair(qrels_path, number, (query_id, doc_id), first_line)
        qrels.append((query_id, doc_id, 1))
    return JudgedCollection("cisi", documents, queries, qrels)


def _checked_id(value: str, what: str) -> str:
    """An id that survives both file formats: not empty, no whitespace (the column separator)."""
    if not value or any(char.isspace() for char in value):
        raise LtrrError(f"{what} {value!r} is empty or contains whitespace")
    return value


def _write_lines(path: Path, lines: list[str]) -> int:
    """Lines are built (and checked) before the file is opened, so a rejected item leaves no
    half-written file behind."""
    try:
        with path.open("w", encoding="utf-8", newline="\n") as handle:
            handle.writelines(line + "\n" for line in lines)
    except OSError as exc:
        raise LtrrError(f"cannot write {path}: {exc.strerror}") from None
    return len(lines)


def write_queries(path: Path, queries: Iterable[tuple[str, str]]) -> int:
    """Write `query_id<TAB>text` lines, whitespace in the text collapsed to single spaces; refuses
    what read_queries would reject, so a written file always reads back. Returns the count."""
    lines: list[str] = []
    seen: set[str] = set()
    for query_id, text in queries:
        _checked_id(query_id, "query id")
        if query_id in seen:
            raise LtrrError(f"duplicate query id {query_id!r}")
        seen.add(query_id)
        if not (collapsed := _collapse(text)):
            raise LtrrError(f"query {query_id!r} has no text")
        lines.append(f"{query_id}\t{collapsed}")
    return _write_lines(path, lines)


def write_qrels(path: Path, qrels: Iterable[tuple[str, str, int]]) -> int:
    """Write TREC qrels lines `query_id 0 doc_id grade`; refuses what read_qrels would reject.
    Returns the count."""
    lines: list[str] = []
    seen: set[tuple[str, str]] = set()
    for query_id, doc_id, grade in qrels:
        _checked_id(query_id, "query id")
        _checked_id(doc_id, "document id")
        if (query_id, doc_id) in seen:
            raise LtrrError(f"duplicate judgment of {doc_id!r} for query {query_id!r}")
        seen.add((query_id, doc_id))
        lines.append(f"{query_id} 0 {doc_id} {grade:d}")
    return _write_lines(path, lines)


def write_documents(path: Path, documents: Iterable[Mapping[str, Any]]) -> int:
    """Write one JSON object per line (UTF-8, not ASCII-escaped). Returns the count."""
    return _write_lines(path, [json.dumps(dict(doc), ensure_ascii=False) for doc in documents])


def read_queries(path: Path) -> list[tuple[str, str]]:
    """(query_id, text) pairs from a queries TSV file, in file order; blank lines are skipped.
    A malformed line raises LtrrError naming the file and line."""
    queries: list[tuple[str, str]] = []
    first_line: dict[str, int] = {}
    for number, line in _lines(path):
        if not line:
            continue
        columns = line.split("\t")
        if len(columns) != 2:
            reason = f"expected 2 tab-separated columns (query_id, text), found {len(columns)}"
            raise _error(path, number, reason)
        query_id, text = columns[0].strip(), _collapse(columns[1])
        if not query_id:
            raise _error(path, number, "empty query id")
        if any(char.isspace() for char in query_id):
            raise _error(path, number, f"query id {query_id!r} contains whitespace")
        if query_id in first_line:
            first = first_line[query_id]
            raise _error(path, number, f"duplicate query id {query_id!r} (first at line {first})")
        first_line[query_id] = number
        queries.append((query_id, text))
    return queries


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """query_id -> {doc_id: grade} from a TREC qrels file (the second column is ignored, as
    trec_eval does); blank lines are skipped. A malformed line raises LtrrError naming the file
    and line, and so does a second judgment of the same pair, which would be ambiguous."""
    qrels: dict[str, dict[str, int]] = {}
    first_line: dict[tuple[str, str], int] = {}
    for number, columns in _columns(path):
        if len(columns) != 4:
            reason = f"expected 4 columns (query_id, 0, doc_id, grade), found {len(columns)}"
            raise _error(path, number, reason)
        query_id, _, doc_id, grade_text = columns
        grade = _integer(path, number, grade_text, "grade")
        _check_pair(path, number, (query_id, doc_id), first_line)
        qrels.setdefault(query_id, {})[doc_id] = grade
    return qrels
