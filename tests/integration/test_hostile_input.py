"""Hostile input against a real node: searches and feedback through the Python API, and the
`ltrr` command line's search, feedback and ingest. Every case gets a correct result or a clear
error: no traceback, no server error, no partial write (what was refused is not stored).

`pytest --hypothesis-show-statistics` reports how many cases each property tried.
"""

from __future__ import annotations

import csv
import itertools
import json
import random
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from opensearchpy import OpenSearch
from typer.testing import CliRunner

from ltrr_os import FeedbackEvent, LTRRClient, QueryError, SearchContext, SearchResponse
from ltrr_os.catalog import load_lexicon
from ltrr_os.cli import app
from ltrr_os.config import LtrrSettings, load_schema
from ltrr_os.embedding import Encoder
from ltrr_os.opensearch import bootstrap
from ltrr_os.policy import FixedPlanPolicy
from ltrr_os.strategies._clauses import text_tokens

from ..unit.test_hostile_input import EXPENSIVE_TEXT, WEIRD_TEXT, WEIRD_VALUE
from .test_strategies import HOSTILE

ON_THE_NODE = hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=list(HealthCheck)
)
SLOW = hypothesis_settings(ON_THE_NODE, max_examples=15)  # each case is a whole command
EVERY_STRATEGY = {"lexical": 5, "structured": 5, "vector": 5, "memory": 5, "exploration": 5}
example_ids = itertools.count()


@pytest.fixture(scope="module")
def client(
    music_settings: LtrrSettings, encoder: Encoder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LTRRClient]:
    directory = tmp_path_factory.mktemp("hostile")
    own = music_settings.model_copy(
        update={"model_dir": directory / "models", "spool_dir": directory / "spool"}
    )
    with LTRRClient(own, encoder=encoder, policy=FixedPlanPolicy(EVERY_STRATEGY)) as ltrr:
        yield ltrr


@pytest.fixture(scope="module")
def searches(client: LTRRClient) -> list[SearchResponse]:
    """Searches that feedback may refer to."""
    return [client.search(text, limit=5) for text in ("queen", "taylor swift", "80s rock")]


@hypothesis_settings(ON_THE_NODE, max_examples=80)  # a quarter of the cases reach the node
@given(
    text=st.one_of(HOSTILE, WEIRD_TEXT, st.text(min_size=500, max_size=600)),
    limit=st.one_of(
        st.integers(1, 20),
        st.integers(-3, 200),
        st.sampled_from([None, 1.5, float("nan"), "10", True]),
    ),
    context=st.one_of(
        st.none(),
        st.builds(SearchContext, user_id=st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True)),
        st.sampled_from(["u1", {"user_id": "u1"}, 42]),
    ),
)
def test_any_search_gives_results_or_a_query_error_never_a_server_error(
    client: LTRRClient, text: Any, limit: Any, context: Any
) -> None:
    try:
        response = client.search(text, context, limit)
    except QueryError as error:
        refusal = str(error)
        event(f"refused: {refusal.split(' ')[0]}")
    else:
        refusal = ""
        event("answered")
        assert not response.partial, response.errors
        assert len(response.results) <= limit
    assert refusal or isinstance(limit, int)


def event_for(
    response: SearchResponse, action: str, position: int, extra: dict[str, Any]
) -> dict[str, Any]:
    result = response.results[(position - 1) % len(response.results)]
    return {
        "search_id": response.search_id,
        "action": action,
        "object_id": result.id,
        "position": position,
        **extra,
    }


def is_unknown(raw: Any) -> bool:
    """A well-formed event for a search that never was."""
    return isinstance(raw, dict) and str(raw.get("search_id", "")).startswith("nosuch")


VALID_EXTRAS = st.fixed_dictionaries(
    {},
    optional={
        # Any time up to a day ahead (clocks drift); further ahead is refused.
        "timestamp": st.datetimes(max_value=datetime.now() + timedelta(hours=12)).map(
            lambda moment: moment.isoformat()
        ),
        "user_id": st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True),
        "event_id": st.builds(lambda: f"e-{next(example_ids)}"),  # unique: ids are keys
    },
)


@ON_THE_NODE
@given(data=st.data())
def test_hostile_feedback_is_stored_exactly_as_acknowledged(
    client: LTRRClient, searches: list[SearchResponse], os_client: OpenSearch, data: st.DataObject
) -> None:
    """Valid events (in any order, any timestamp, repeated), events for searches no process
    knows (they may be on their way from another server's spool: taken, and joined by the
    learner if the search ever arrives), and events of any shape: each is accepted, ignored as
    a repeat, or refused with its index; what is stored is exactly what was accepted, once."""
    valid = st.builds(
        event_for,
        st.sampled_from(searches),
        st.sampled_from(["click", "impression", "playback", "add_to_favorites", "skip"]),
        st.integers(1, 10),
        VALID_EXTRAS,
    )
    odd_object = st.tuples(valid, WEIRD_TEXT).map(lambda p: {**p[0], "object_id": p[1]})
    unknown = valid.map(lambda event: {**event, "search_id": f"nosuch{next(example_ids)}"})
    hostile = st.dictionaries(
        st.sampled_from(["search_id", "action", "object_id", "position", "timestamp", "junk"]),
        WEIRD_VALUE,
    )
    batch = data.draw(
        st.lists(st.one_of(valid, odd_object, unknown, hostile, st.just(42)), max_size=8)
    )
    receipt = client.feedback(batch)
    refused = {rejection.index for rejection in receipt.rejected}
    kept = [FeedbackEvent.model_validate(raw) for i, raw in enumerate(batch) if i not in refused]
    assert receipt.accepted + receipt.duplicates == len(kept)
    assert not any(is_unknown(batch[rejection.index]) for rejection in receipt.rejected)
    again = client.feedback(list(reversed(batch)))
    assert (again.accepted, again.duplicates, len(again.rejected)) == (0, len(kept), len(refused))

    assert client.flush() == 0
    index = client.settings.index_name("ubi_events")
    os_client.indices.refresh(index=index)
    keys = [event.key for event in kept]
    found = os_client.mget(index=index, body={"ids": keys}, _source=False)["docs"] if keys else []
    stored = {doc["_id"] for doc in found if doc.get("found")}
    assert stored == {event.key for event in kept}


# -- the command line -------------------------------------------------------------------------


@pytest.fixture
def cli(
    client: LTRRClient, encoder: Encoder, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> CliRunner:
    """`ltrr` against the node, with the session's encoder (loading one per command is slow)."""
    monkeypatch.setattr("ltrr_os.cli._app.load_encoder", lambda *_: encoder)
    monkeypatch.setattr("ltrr_os.client._client.load_encoder", lambda *_: encoder)
    return CliRunner(
        env={
            "LTRR_OPENSEARCH_URL": client.settings.opensearch_url,
            "LTRR_MODEL_DIR": str(tmp_path / "models"),
            "LTRR_SPOOL_DIR": str(tmp_path / "spool"),
        }
    )


def assert_clean(result: Any, codes: tuple[int, ...]) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in codes, result.output[-1000:]
    assert "Traceback" not in result.output


@SLOW
@given(
    text=st.one_of(HOSTILE, WEIRD_TEXT).filter(lambda t: "\x00" not in t and "\ud800" not in t),
    limit=st.sampled_from(["5", "0", "-1", "abc", "100000"]),
)
def test_any_search_from_the_command_line_answers_or_says_why(
    cli: CliRunner, client: LTRRClient, text: str, limit: str
) -> None:
    prefix = client.settings.index_prefix
    result = cli.invoke(
        app, ["--index-prefix", prefix, "search", "--json", "--limit", limit, "--", text]
    )
    assert_clean(result, (0, 2))
    if result.exit_code == 0:
        assert json.loads(result.stdout)["partial"] is False


@SLOW
@given(
    lines=st.lists(
        st.one_of(
            st.dictionaries(
                st.sampled_from(["search_id", "action", "object_id", "position"]), WEIRD_VALUE
            ).map(lambda d: json.dumps(d, allow_nan=True)),
            WEIRD_TEXT,
        ),
        max_size=5,
    )
)
def test_any_feedback_file_is_recorded_or_refused_line_by_line(
    cli: CliRunner, client: LTRRClient, tmp_path: Path, lines: list[str]
) -> None:
    path = tmp_path / f"events-{next(example_ids)}.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    result = cli.invoke(
        app, ["--index-prefix", client.settings.index_prefix, "feedback", str(path)]
    )
    assert_clean(result, (0, 1))


@pytest.fixture(scope="module")
def documents_settings(settings: LtrrSettings, os_client: OpenSearch) -> Iterator[LtrrSettings]:
    own = settings.model_copy(update={"index_prefix": f"{settings.index_prefix}hostile-docs-"})
    bootstrap(os_client, own, load_schema("documents"))
    yield own
    os_client.indices.delete(index=f"{own.index_prefix}*")


HOSTILE_ROW = st.fixed_dictionaries(
    {"title": st.one_of(WEIRD_TEXT, st.text(max_size=30))},
    optional={
        "author": WEIRD_VALUE,
        "body": st.one_of(WEIRD_TEXT, st.just("x" * 200_000)),
        "popularity": WEIRD_VALUE,
        "entity_type": st.sampled_from(["document", "track", "", "DOCUMENT"]),
        "embedding": st.one_of(WEIRD_VALUE, st.lists(st.floats(), min_size=384, max_size=384)),
    },
)


@SLOW
@given(rows=st.lists(HOSTILE_ROW, min_size=1, max_size=6), as_csv=st.booleans())
def test_ingest_of_hostile_rows_stores_exactly_the_rows_it_does_not_reject(
    cli: CliRunner,
    documents_settings: LtrrSettings,
    os_client: OpenSearch,
    tmp_path: Path,
    rows: list[dict[str, Any]],
    as_csv: bool,
) -> None:
    run = next(example_ids)
    ids = [f"hostile-{run}-{n}" for n in range(len(rows))]
    path = tmp_path / f"rows-{run}.{'csv' if as_csv else 'jsonl'}"
    lines = write_rows(path, [{"id": i, **row} for i, row in zip(ids, rows, strict=True)])
    rejections = tmp_path / f"rejected-{run}.jsonl"
    result = cli.invoke(
        app,
        [
            "--index-prefix",
            documents_settings.index_prefix,
            "ingest",
            str(path),
            "--schema",
            "documents",
            "--rejections",
            str(rejections),
        ],
    )
    assert_clean(result, (0, 1))
    refused_lines = {json.loads(line)["line"] for line in rejections.read_text().splitlines()}
    assert (result.exit_code == 1) == bool(refused_lines)
    found = os_client.mget(
        index=documents_settings.index_name("catalog"), body={"ids": ids}, _source=False
    )["docs"]
    stored = {doc["_id"] for doc in found if doc.get("found")}
    assert stored == {i for i, line in zip(ids, lines, strict=True) if line not in refused_lines}


def one_line(value: Any) -> str:
    """A CSV cell without line breaks (so that rows and lines correspond), lists joined by '|'."""
    text = (
        "|".join(map(str, value))
        if isinstance(value, list)
        else ""
        if value is None
        else str(value)
    )
    return text.replace("\r", " ").replace("\n", " ")


def write_rows(path: Path, rows: list[dict[str, Any]]) -> list[int]:
    """Write the rows as CSV or JSON Lines; returns each row's line."""
    first_lines = []
    with path.open("w", encoding="utf-8", errors="surrogatepass", newline="") as out:
        if path.suffix == ".csv":
            columns = sorted({key for row in rows for key in row})
            writer = csv.writer(out)
            writer.writerow(columns)
            for line, row in enumerate(rows, start=2):
                first_lines.append(line)
                writer.writerow([one_line(row.get(column)) for column in columns])
        else:
            for line, row in enumerate(rows, start=1):
                first_lines.append(line)
                out.write(json.dumps(row, allow_nan=True) + "\n")
    return first_lines


@pytest.mark.parametrize("words", [12, 30, 60, 120])
def test_long_queries_of_catalog_words_fail_no_strategy(
    client: LTRRClient, os_client: OpenSearch, words: int
) -> None:
    """Typo tolerance multiplies clauses by expansions: long queries must stay under
    OpenSearch's 1,024 clauses in every strategy."""
    vocabulary = sorted(load_lexicon(os_client, client.settings).vocabulary)
    rng = random.Random(words)
    text = " ".join(rng.choice(vocabulary) for _ in range(words))[: client.settings.max_query_chars]
    response = client.search(text, limit=10)
    assert not response.partial, response.errors


@ON_THE_NODE
@given(text=st.one_of(EXPENSIVE_TEXT, WEIRD_TEXT, st.text(max_size=200)))
def test_token_bounds_never_count_fewer_than_the_nodes_tokenizer(
    os_client: OpenSearch, text: str
) -> None:
    """The clause bounds are computed from `text_tokens`: it must never count fewer tokens than
    the catalog's analyzers make of the same text."""
    assume("\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text))
    analyzed = os_client.indices.analyze(
        body={"tokenizer": "standard", "filter": ["lowercase", "asciifolding"], "text": text}
    )["tokens"]
    assert len(analyzed) <= len(text_tokens(text))


@SLOW
@given(text=EXPENSIVE_TEXT)
def test_expensive_text_is_answered_by_every_strategy(client: LTRRClient, text: str) -> None:
    response = client.search(text, limit=10)
    assert not response.partial, response.errors


def test_concurrent_expensive_searches_fail_no_search(client: LTRRClient) -> None:
    """Four threads send expensive texts of several scripts while normal searches run: every
    search, expensive or normal, is answered in full."""
    expensive = [
        "ก" * 500,
        "東" * 510,
        "a" * 512,
        " ".join(["नमस्ते" * 20] * 4),
        " ".join(["مرحبا" * 30] * 3),
        "สวัสดีครับ" * 50,
        "東京タワーの夜景 " * 50,
        "x" * 100 + " " + "ß" * 300,
    ]
    normal = ["queen", "taylor swift love", "80s rock", "songs by queen", "bohemian rapsody"]
    failures: list[str] = []

    def run(texts: list[str]) -> None:
        for text in texts:
            try:
                response = client.search(text[:512], limit=10)
            except Exception as error:
                failures.append(f"{text[:12]!r}: {error}")
            else:
                if response.partial:
                    failures.append(f"{text[:12]!r}: partial {response.errors}")

    threads = [threading.Thread(target=run, args=(expensive * 2,)) for _ in range(4)]
    threads.append(threading.Thread(target=run, args=(normal * 6,)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
