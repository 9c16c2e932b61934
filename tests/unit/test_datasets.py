from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ltrr_os._errors import LtrrError
from ltrr_os.evaluation import (
    JudgedCollection,
    read_cisi,
    read_cranfield,
    read_qrels,
    read_queries,
    write_documents,
    write_qrels,
    write_queries,
)

IR_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "ir"


@pytest.fixture(scope="module")
def cranfield() -> JudgedCollection:
    return read_cranfield(IR_DATA / "cranfield")


@pytest.fixture(scope="module")
def cisi() -> JudgedCollection:
    return read_cisi(IR_DATA / "cisi")


def _by_id(collection: JudgedCollection) -> dict[str, dict[str, object]]:
    return {document["id"]: document for document in collection.documents}


# --- Cranfield -------------------------------------------------------------------------------


def test_cranfield_documents_leave_out_the_two_empty_records(cranfield: JudgedCollection) -> None:
    ids = [document["id"] for document in cranfield.documents]
    assert len(ids) == 1398
    assert set(ids) == {str(number) for number in range(1, 1401)} - {"471", "995"}


def test_cranfield_document_fields(cranfield: JudgedCollection) -> None:
    first = _by_id(cranfield)["1"]
    assert set(first) == {"id", "entity_type", "title", "body", "author", "bibliography"}
    assert first["entity_type"] == "document"
    assert first["title"] == (
        "experimental investigation of the aerodynamics of a wing in a slipstream ."
    )
    assert first["author"] == "brenckman,m."
    assert first["bibliography"] == "j. ae. scs. 25, 1958, 324."
    body = first["body"]
    assert isinstance(body, str)
    assert body.startswith("experimental investigation of the aerodynamics of a\nwing")
    assert body.endswith("the specific configuration of the experiment .")


def test_cranfield_wrapped_authors_join_with_spaces(cranfield: JudgedCollection) -> None:
    assert _by_id(cranfield)["1041"]["author"] == "c. e. taylor and e. wenk, jr."


def test_cranfield_stray_markers_stay_in_the_abstract(cranfield: JudgedCollection) -> None:
    document = _by_id(cranfield)["240"]
    assert document["author"] == "dean r. chapman"
    assert document["bibliography"] == "naca technote 3792"
    body = document["body"]
    assert isinstance(body, str)
    assert "region  .\napplication to turbulent separations is made for a prandtl number of\n" in (
        body
    )
    assert "\nunity in low-speed flow without injection .\n" in body
    assert ".A" not in body
    assert ".B" not in body


def test_cranfield_query_ids_are_positions(cranfield: JudgedCollection) -> None:
    assert [query_id for query_id, _ in cranfield.queries] == [str(n) for n in range(1, 226)]
    queries = dict(cranfield.queries)
    # Position 3 is `.I 004` in cran.qry; its text spans two CRLF lines.
    assert queries["3"] == (
        "what problems of heat conduction in composite slabs have been solved so far ."
    )
    assert queries["225"] == (
        "what design factors can be used to control lift-drag ratios at mach numbers above 5 ."
    )


def test_cranfield_qrels_map_grades_and_drop_not_relevant(cranfield: JudgedCollection) -> None:
    # cranqrel has 1,837 lines (the README's 1,836 is `wc -l`: the last line has no newline),
    # one -1 per query.
    assert (IR_DATA / "cranfield" / "cranqrel").read_text().count("\n") == 1836
    assert len(cranfield.qrels) == 1837 - 225
    assert Counter(grade for *_, grade in cranfield.qrels) == {4: 128, 3: 387, 2: 734, 1: 363}
    judgments = {(query, doc): grade for query, doc, grade in cranfield.qrels}
    assert judgments[("2", "12")] == 4  # cranqrel 1
    assert judgments[("1", "184")] == 3  # cranqrel 2
    assert judgments[("1", "12")] == 2  # cranqrel 3
    assert judgments[("1", "13")] == 1  # cranqrel 4
    assert ("1", "486") not in judgments  # cranqrel -1
    assert judgments[("125", "995")] == 2  # judged, although document 995 is empty
    assert {query for query, _, _ in cranfield.qrels} == {str(n) for n in range(1, 226)}


# --- CISI ------------------------------------------------------------------------------------


def test_cisi_counts(cisi: JudgedCollection) -> None:
    assert [document["id"] for document in cisi.documents] == [str(n) for n in range(1, 1461)]
    assert [query_id for query_id, _ in cisi.queries] == [str(n) for n in range(1, 113)]
    assert len(cisi.qrels) == 3114
    assert {grade for *_, grade in cisi.qrels} == {1}
    judged = {query for query, _, _ in cisi.qrels}
    assert len(judged) == 76
    assert "36" not in judged
    assert {"1", "111"} <= judged


def test_cisi_document_fields(cisi: JudgedCollection) -> None:
    documents = _by_id(cisi)
    assert documents["1"]["title"] == "18 Editions of the Dewey Decimal Classifications"
    assert documents["1"]["author"] == "Comaromi, J.P."
    assert "bibliography" not in documents["1"]
    # `.T ` and `.A ` with trailing spaces.
    assert documents["2"]["title"] == "Use Made of Technical Libraries"
    assert documents["2"]["author"] == "Slater, M."
    # Wrapped title; `.B` is the year.
    assert documents["4"]["title"] == (
        "Systems Analysis of a University Library; final report and research project"
    )
    assert documents["17"]["bibliography"] == "1970"


def test_cisi_authors_join_with_semicolons(cisi: JudgedCollection) -> None:
    documents = _by_id(cisi)
    assert documents["33"]["author"] == "Burton, R.E.; Kebler, R.W."  # one `.A` each
    assert documents["321"]["author"] == (  # four lines under one `.A`
        "Barton, I.J.; Creasey, S.E.; Lynch, M.F.; Snell, M.J."
    )


def test_cisi_skips_cross_references_keywords_and_codes(cisi: JudgedCollection) -> None:
    body = _by_id(cisi)["321"]["body"]
    assert isinstance(body, str)
    assert body.endswith("promises considerable\ncost advantages.")
    assert all(
        "bit vector" not in str(value) and "3.42 3.70" not in str(value)
        for document in cisi.documents
        for value in document.values()
    )
    assert all("1\t5\t1" not in str(document.get("body")) for document in cisi.documents)


def test_cisi_query_text_is_title_then_w(cisi: JudgedCollection) -> None:
    queries = dict(cisi.queries)
    assert queries["3"] == "What is information science? Give definitions where possible."
    assert queries["58"].startswith(
        "Directions in Library Networking Bibliographic control before and after MARC"
    )
    assert queries["58"].endswith("to avoid fragmentation in this new environment.")
    assert "Avram" not in queries["58"]  # `.A` of a query is not its text
    assert "JASIS" not in queries["58"]  # nor is `.B`


# --- SMART-format structure errors -----------------------------------------------------------


def _cranfield_dir(tmp_path: Path, documents: str) -> Path:
    (tmp_path / "cran.all.1400").write_text(documents)
    (tmp_path / "cran.qry").write_text(".I 001\r\n.W\r\nwhat is lift .\r\n")
    (tmp_path / "cranqrel").write_text("1 1 2\n")
    return tmp_path


@pytest.mark.parametrize(
    ("documents", "line", "reason"),
    [
        (".T\ntitle\n.W\nbody\n", 1, "field marker .T before the first .I"),
        ("stray\n.I 1\n.T\ntitle\n", 1, "text before the first .I"),
        (".I 1\n.T\nt\n.I 1\n.T\nu\n", 4, "duplicate record 1 (first at line 1)"),
        (".I one\n.T\ntitle\n", 1, ".I needs a record number, found '.I one'"),
        (".I 1\n.T\ntitle\n.X\nx\n", 4, "unknown field marker .X (expected .T, .A, .B, .W)"),
        (".I 1\n.T title\n", 2, "unexpected text after .T: 'title'"),
        (".I 1\nloose\n.T\ntitle\n", 2, "text in record 1 before its first field marker"),
        (".I 1\n.T\n.W\nbody only\n", 1, "record 1 has no title"),
    ],
)
def test_malformed_collection_names_file_and_line(
    tmp_path: Path, documents: str, line: int, reason: str
) -> None:
    directory = _cranfield_dir(tmp_path, documents)
    with pytest.raises(LtrrError) as caught:
        read_cranfield(directory)
    assert str(caught.value) == f"{directory / 'cran.all.1400'}:{line}: {reason}"


def test_collection_tolerates_blank_lines_and_trailing_whitespace(tmp_path: Path) -> None:
    directory = _cranfield_dir(tmp_path, "\n.I 1  \n.T \n title \n\n.W\n  body\n\n")
    collection = read_cranfield(directory)
    assert collection.documents == [
        {"id": "1", "entity_type": "document", "title": "title", "body": "body"}
    ]
    assert collection.queries == [("1", "what is lift .")]
    assert collection.qrels == [("1", "1", 3)]


@pytest.mark.parametrize(
    ("qrels", "message"),
    [
        ("1 1\n", "cranqrel:1: expected 3 columns (query, document, grade), found 2"),
        ("1 1 5\n", "cranqrel:1: grade 5 is not one of 1, 2, 3, 4, -1"),
        ("2 1 1\n", "cranqrel:1: query number 2 is not between 1 and 1"),
        ("1 1 1\n1 1 -1\n", "cranqrel:2: duplicate judgment of 1 for query 1 (first at line 1)"),
    ],
)
def test_malformed_cranqrel(tmp_path: Path, qrels: str, message: str) -> None:
    directory = _cranfield_dir(tmp_path, ".I 1\n.T\ntitle\n")
    (directory / "cranqrel").write_text(qrels)
    with pytest.raises(LtrrError) as caught:
        read_cranfield(directory)
    assert str(caught.value) == f"{directory / message}"


@pytest.mark.parametrize(
    ("queries", "rel", "where", "reason"),
    [
        (".I 1\n.W\nquery\n", "1 1 0 0.0\n7 1 0 0.0\n", "CISI.REL:2", "query 7 is not in CISI.QRY"),
        (
            ".I 1\n.W\nquery\n",
            "1 1 0\n",
            "CISI.REL:1",
            "expected 4 columns (query, document, 0, 0.0), found 3",
        ),
        (".I 1\n.W\nquery\n.I 2\n.W\n\n", "1 1 0 0.0\n", "CISI.QRY:4", "query 2 has no text"),
    ],
)
def test_malformed_cisi(tmp_path: Path, queries: str, rel: str, where: str, reason: str) -> None:
    (tmp_path / "CISI.ALL").write_text(".I 1\n.T\ntitle\n.X\n1\t1\t1\n")
    (tmp_path / "CISI.QRY").write_text(queries)
    (tmp_path / "CISI.REL").write_text(rel)
    with pytest.raises(LtrrError) as caught:
        read_cisi(tmp_path)
    assert str(caught.value) == f"{tmp_path / where}: {reason}"


def test_cisi_reads_a_minimal_collection(tmp_path: Path) -> None:
    (tmp_path / "CISI.ALL").write_text(".I 1\n.T\ntitle\n.A\nA, B.\n.A\nC, D.\n.X\n1\t1\t1\n")
    (tmp_path / "CISI.QRY").write_text(".I 1\n.T\nA title\n.A\nE, F.\n.W\nthe question\n.B\n(X)\n")
    (tmp_path / "CISI.REL").write_text("1\t1\t0\t0.000000\n")
    assert read_cisi(tmp_path) == JudgedCollection(
        name="cisi",
        documents=[
            {"id": "1", "entity_type": "document", "title": "title", "author": "A, B.; C, D."}
        ],
        queries=[("1", "A title the question")],
        qrels=[("1", "1", 1)],
    )


# --- Queries and qrels files -----------------------------------------------------------------


def test_queries_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "queries.tsv"
    queries = [("q1", "heat transfer"), ("7", "Beyoncé — déjà vu"), ("q-3", "a\tb\nc  d")]
    assert write_queries(path, queries) == 3
    assert path.read_text(encoding="utf-8") == (
        "q1\theat transfer\n7\tBeyoncé — déjà vu\nq-3\ta b c d\n"
    )
    assert read_queries(path) == [
        ("q1", "heat transfer"),
        ("7", "Beyoncé — déjà vu"),
        ("q-3", "a b c d"),
    ]


def test_qrels_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "qrels.txt"
    qrels = [("q1", "d1", 2), ("q1", "d2", 0), ("q2", "d1", -1), ("q2", "d3", 4)]
    assert write_qrels(path, qrels) == 4
    assert path.read_text() == "q1 0 d1 2\nq1 0 d2 0\nq2 0 d1 -1\nq2 0 d3 4\n"
    assert read_qrels(path) == {"q1": {"d1": 2, "d2": 0}, "q2": {"d1": -1, "d3": 4}}


def test_collection_round_trips_through_files(tmp_path: Path, cisi: JudgedCollection) -> None:
    assert write_queries(tmp_path / "q.tsv", cisi.queries) == 112
    assert write_qrels(tmp_path / "qrels", cisi.qrels) == 3114
    assert read_queries(tmp_path / "q.tsv") == cisi.queries
    qrels = read_qrels(tmp_path / "qrels")
    assert len(qrels) == 76
    assert sum(len(judged) for judged in qrels.values()) == 3114


def test_write_documents_is_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "documents.jsonl"
    documents = [
        {"id": "1", "entity_type": "document", "title": "Déjà vu", "body": "two\nlines"},
        {"id": "2", "entity_type": "document", "title": "t"},
    ]
    assert write_documents(path, documents) == 2
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == (
        '{"id": "1", "entity_type": "document", "title": "Déjà vu", "body": "two\\nlines"}'
    )
    assert [json.loads(line) for line in lines] == documents


def test_read_files_tolerate_blank_lines_crlf_and_bom(tmp_path: Path) -> None:
    queries = tmp_path / "queries.tsv"
    queries.write_bytes(b"\xef\xbb\xbfq1\tfirst query  \r\n\r\n  \nq2\tsecond\r\n")
    assert read_queries(queries) == [("q1", "first query"), ("q2", "second")]
    qrels = tmp_path / "qrels"
    qrels.write_bytes(b"q1  0\td1 1 \r\n\n")
    assert read_qrels(qrels) == {"q1": {"d1": 1}}


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        (b"q1\ttext\nq2 text\n", 2, "expected 2 tab-separated columns (query_id, text), found 1"),
        (b"q1\ta\tb\n", 1, "expected 2 tab-separated columns (query_id, text), found 3"),
        (b"q1\ttext\n\n\ttext\n", 3, "empty query id"),
        (b"q 1\ttext\n", 1, "query id 'q 1' contains whitespace"),
        (b"q1\tone\nq2\ttwo\nq1\tthree\n", 3, "duplicate query id 'q1' (first at line 1)"),
        (b"q1\t \n", 1, "expected 2 tab-separated columns (query_id, text), found 1"),
        (b"q1\tok\nq2\tbad \xff byte\n", 2, "invalid UTF-8 at byte 7"),
    ],
)
def test_read_queries_rejects_malformed_lines(
    tmp_path: Path, content: bytes, line: int, reason: str
) -> None:
    path = tmp_path / "queries.tsv"
    path.write_bytes(content)
    with pytest.raises(LtrrError) as caught:
        read_queries(path)
    assert str(caught.value) == f"{path}:{line}: {reason}"


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        (b"q1 0 d1 1\nq1 0 d2\n", 2, "expected 4 columns (query_id, 0, doc_id, grade), found 3"),
        (b"q1 0 d1 1 extra\n", 1, "expected 4 columns (query_id, 0, doc_id, grade), found 5"),
        (b"q1 0 d1 high\n", 1, "grade 'high' is not an integer"),
        (b"q1 0 d1 1.0\n", 1, "grade '1.0' is not an integer"),
        (b"q1 0 d1 1_0\n", 1, "grade '1_0' is not an integer"),
        (b"q1 0 d1 1\nq1 0 d1 2\n", 2, "duplicate judgment of d1 for query q1 (first at line 1)"),
        (b"q1 0 d\xc3 1\n", 1, "invalid UTF-8 at byte 6"),
    ],
)
def test_read_qrels_rejects_malformed_lines(
    tmp_path: Path, content: bytes, line: int, reason: str
) -> None:
    path = tmp_path / "qrels.txt"
    path.write_bytes(content)
    with pytest.raises(LtrrError) as caught:
        read_qrels(path)
    assert str(caught.value) == f"{path}:{line}: {reason}"


def test_missing_file_is_an_ltrr_error(tmp_path: Path) -> None:
    with pytest.raises(LtrrError, match=r"^cannot read .*missing\.tsv: No such file"):
        read_queries(tmp_path / "missing.tsv")


@pytest.mark.parametrize(
    ("queries", "message"),
    [
        ([("", "text")], "query id '' is empty or contains whitespace"),
        ([("q 1", "text")], "query id 'q 1' is empty or contains whitespace"),
        ([("q1", "a"), ("q1", "b")], "duplicate query id 'q1'"),
        ([("q1", " \t\n")], "query 'q1' has no text"),
    ],
)
def test_write_queries_refuses_what_cannot_be_read_back(
    tmp_path: Path, queries: list[tuple[str, str]], message: str
) -> None:
    path = tmp_path / "queries.tsv"
    with pytest.raises(LtrrError) as caught:
        write_queries(path, queries)
    assert str(caught.value) == message
    assert not path.exists()


@pytest.mark.parametrize(
    ("qrels", "message"),
    [
        ([("q1", "d 1", 1)], "document id 'd 1' is empty or contains whitespace"),
        ([("q1", "d1", 1), ("q1", "d1", 2)], "duplicate judgment of 'd1' for query 'q1'"),
    ],
)
def test_write_qrels_refuses_what_cannot_be_read_back(
    tmp_path: Path, qrels: list[tuple[str, str, int]], message: str
) -> None:
    path = tmp_path / "qrels.txt"
    with pytest.raises(LtrrError) as caught:
        write_qrels(path, qrels)
    assert str(caught.value) == message
    assert not path.exists()
