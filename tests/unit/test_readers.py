from __future__ import annotations

from pathlib import Path

import pytest

from ltrr_os import LtrrError
from ltrr_os.catalog import Rejection, SourceRow, read_rows


def split(rows: list[SourceRow | Rejection]) -> tuple[list[SourceRow], list[Rejection]]:
    good = [r for r in rows if isinstance(r, SourceRow)]
    bad = [r for r in rows if isinstance(r, Rejection)]
    return good, bad


def test_csv_bad_rows_are_reported_with_their_line_and_the_rest_read(tmp_path: Path) -> None:
    path = tmp_path / "tracks.csv"
    path.write_bytes(
        b"id,title,artist\n"
        b"1,Basket Case,Green Day\n"
        b"2,Too,Many,Columns\n"
        b'3,"Multi\nline title",Someone\n'
        b"4,Caf\xe9 broken,Latin1\n"
        b"\n"
        b"5,Fine,Artist\n"
    )
    good, bad = split(list(read_rows(path)))
    assert [r.values["id"] for r in good] == ["1", "3", "5"]
    assert good[1].values["title"] == "Multi\nline title"
    assert [(r.line, r.reason) for r in bad] == [
        (3, "expected 3 columns, found 4"),
        (6, "field 'title' is not valid UTF-8"),
    ]
    assert good[2].line == 8
    assert bad[0].file == str(path)


def test_oversize_values_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_text("id,title\n1," + "x" * 40_000 + "\n2,ok\n")
    good, bad = split(list(read_rows(path)))
    assert [r.values["id"] for r in good] == ["2"]
    assert "limit 32000" in bad[0].reason


def test_jsonl_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_bytes(
        b'{"id": "1", "title": "a"}\n'
        b"not json\n"
        b"[1, 2]\n"
        b'{"id": "4", "title": "\xff"}\n'
        b'{"id": "5", "n": NaN}\n'
        b'{"id": "6", "title": "nul\\u0000"}\n'
        b'{"id": "7", "title": "b"}\n'
    )
    good, bad = split(list(read_rows(path)))
    assert [r.values["id"] for r in good] == ["1", "7"]
    assert [(r.line, r.reason.split(":")[0]) for r in bad] == [
        (2, "invalid JSON"),
        (3, "line is not a JSON object"),
        (4, "line is not valid UTF-8"),
        (5, "field 'n' is nan (not a finite number)"),
        (6, "field 'title' contains a NUL character"),
    ]


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LtrrError, match="unknown file type"):
        read_rows(tmp_path / "x.xml")
    with pytest.raises(LtrrError, match="cannot read"):
        list(read_rows(tmp_path / "missing.csv"))
