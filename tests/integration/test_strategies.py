"""Retrieval strategies on a real node, over a slice of the real music catalog."""

from __future__ import annotations

import random
import string
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from opensearchpy import OpenSearch, Transport

from ltrr_os import QueryError
from ltrr_os.catalog import load_lexicon
from ltrr_os.config import LtrrSettings
from ltrr_os.embedding import Encoder
from ltrr_os.strategies import Seed, StrategyContext, get_strategy, retrieve, strategies
from ltrr_os.understanding import Lexicon, understand

from .conftest import MUSIC

ALL = list(strategies())


@pytest.fixture(scope="module")
def music(
    music_settings: LtrrSettings, os_client: OpenSearch, encoder: Encoder
) -> tuple[StrategyContext, Lexicon]:
    """The slice's context, with what every strategy needs to run: a user's taste (personal)
    and hits to expand (related)."""
    queen = {"entity_type": "artist", "title": "Queen", "artist": "Queen"}
    context = StrategyContext(
        settings=music_settings,
        schema=MUSIC,
        encoder=encoder,
        user_vector=tuple(encoder.encode_one("rock anthems")),
        seeds=(Seed("artist:queen", queen, 1.0),),
    )
    return context, load_lexicon(os_client, music_settings)


def run(
    client: OpenSearch, music: tuple[StrategyContext, Lexicon], text: str, plan: dict[str, int]
) -> dict[str, list[dict[str, Any]]]:
    context, lexicon = music
    retrieval = retrieve(client, plan, understand(text, lexicon), context)
    for result in retrieval.results.values():
        assert result.error is None, result.error
    return {n: [c.source for c in r.candidates] for n, r in retrieval.results.items()}


class CountingTransport(Transport):
    """The real transport, counting the HTTP requests it sends."""

    requests = 0

    def perform_request(self, *args: Any, **kwargs: Any) -> Any:
        CountingTransport.requests += 1
        return super().perform_request(*args, **kwargs)


def test_all_strategies_run_in_one_round_trip_with_their_own_sizes(
    music: tuple[StrategyContext, Lexicon], settings: LtrrSettings
) -> None:
    context, lexicon = music
    client = OpenSearch(hosts=settings.hosts, transport_class=CountingTransport)
    sizes = {"lexical": 3, "structured": 4, "vector": 5, "memory": 2, "exploration": 1}
    sizes |= {"related": 6, "personal": 7, "personal_taste": 8, "fresh": 2}
    assert set(sizes) == set(ALL)
    before = CountingTransport.requests
    retrieval = retrieve(client, sizes, understand("queen", lexicon), context)
    assert CountingTransport.requests - before == 1
    assert {n: len(r.candidates) for n, r in retrieval.results.items()} == sizes


def test_lexical_tolerates_typos_and_prefers_the_more_popular_of_equal_titles(
    os_client: OpenSearch, music: tuple[StrategyContext, Lexicon]
) -> None:
    hits = run(os_client, music, "bohemain rhapsodie", {"lexical": 5})["lexical"]
    assert hits[0]["title"] == "Bohemian Rhapsody"
    twins = run(os_client, music, "zebra crossing anthem", {"lexical": 2})["lexical"]
    assert [t["artist"] for t in twins] == ["Band 9", "Band 1"]


def test_structured_search_applies_the_slots_of_the_query(
    os_client: OpenSearch, music: tuple[StrategyContext, Lexicon]
) -> None:
    hits = run(os_client, music, "songs by queen", {"structured": 10})["structured"]
    assert len(hits) == 10
    assert all(h["artist"] == "Queen" and h["entity_type"] == "track" for h in hits)
    eighties = run(os_client, music, "80s rock", {"structured": 10})["structured"]
    assert all("1980s" in h.get("era", []) or "rock" in h.get("genre", []) for h in eighties)
    assert sum("1980s" in h.get("era", []) and "rock" in h.get("genre", []) for h in eighties) >= 5


def test_structured_search_is_skipped_without_slots(
    music: tuple[StrategyContext, Lexicon], os_client: OpenSearch
) -> None:
    context, lexicon = music
    retrieval = retrieve(
        os_client,
        {"structured": 5, "lexical": 5},
        understand("bohemian rhapsody", lexicon),
        context,
    )
    assert retrieval.results["structured"].skipped
    assert retrieval.results["lexical"].ok


def test_vector_search_finds_by_meaning(
    os_client: OpenSearch, music: tuple[StrategyContext, Lexicon]
) -> None:
    hits = run(os_client, music, "queen freddie mercury rock opera", {"vector": 10})["vector"]
    assert any(h["artist"] == "Queen" for h in hits[:5])


def test_memory_serves_predicted_queries_then_observed_engagement(
    os_client: OpenSearch, music: tuple[StrategyContext, Lexicon]
) -> None:
    context, _ = music
    hits = run(os_client, music, "queen bohemian rhapsody", {"memory": 3})["memory"]
    assert hits[0]["title"] == "Bohemian Rhapsody"
    alias = context.settings.index_name("catalog")
    target = run(os_client, music, "dolly parton", {"lexical": 20})["lexical"][-1]
    os_client.update(
        index=alias, id=target["id"], body={"doc": {"q2e": {"my secret mix": 3.0}}}, refresh=True
    )
    hits = run(os_client, music, "my secret mix", {"memory": 3})["memory"]
    assert [h["id"] for h in hits] == [target["id"]]


def test_exploration_surfaces_the_long_tail_in_a_seeded_order(
    os_client: OpenSearch, music: tuple[StrategyContext, Lexicon]
) -> None:
    context, lexicon = music
    query = understand("the", lexicon)

    def explore(seed: int) -> list[str]:
        seeded = StrategyContext(
            settings=context.settings,
            schema=context.schema,
            encoder=context.encoder,
            exploration_seed=seed,
        )
        result = retrieve(os_client, {"exploration": 8}, query, seeded).results["exploration"]
        assert all(c.source.get("popularity_value", 0) < 0.5 for c in result.candidates)
        return [c.id for c in result.candidates]

    assert explore(1) == explore(1)
    assert explore(1) != explore(2)
    assert len(explore(1)) == 8


def test_a_missing_template_fails_only_its_strategy(
    os_client: OpenSearch, music: tuple[StrategyContext, Lexicon]
) -> None:
    context, lexicon = music
    template_id = get_strategy("vector").template_id(context.settings)
    stored = os_client.get_script(id=template_id)["script"]["source"]
    os_client.delete_script(id=template_id)
    try:
        retrieval = retrieve(
            os_client, {"lexical": 3, "vector": 3}, understand("queen", lexicon), context
        )
    finally:
        os_client.put_script(
            id=template_id, body={"script": {"lang": "mustache", "source": stored}}
        )
    assert retrieval.partial
    assert retrieval.results["vector"].error is not None
    assert len(retrieval.results["lexical"].candidates) == 3


def test_limits_are_enforced_before_opensearch(
    music: tuple[StrategyContext, Lexicon], os_client: OpenSearch
) -> None:
    context, lexicon = music
    with pytest.raises(QueryError, match="limit 512"):
        retrieve(os_client, {"lexical": 5}, understand("x" * 10_000, lexicon), context)
    with pytest.raises(QueryError, match="from 0 to 1000"):
        retrieve(os_client, {"lexical": 5000}, understand("queen", lexicon), context)
    empty = retrieve(os_client, dict.fromkeys(ALL, 5), understand("  \t\n ", lexicon), context)
    assert all(r.skipped for r in empty.results.values())


@pytest.mark.parametrize("kind", ["letters", "catalog words"])
def test_long_texts_stay_under_the_clause_limit_in_every_strategy(
    music: tuple[StrategyContext, Lexicon], os_client: OpenSearch, kind: str
) -> None:
    """A deployment may allow abstracts as queries; each word adds clauses, and past 1,024 a
    strategy would fail with a server error."""
    context, lexicon = music
    long_context = replace(context, max_query_chars=5000)
    words = sorted(lexicon.vocabulary) if kind == "catalog words" else list(string.ascii_lowercase)
    rng = random.Random(kind)
    text = " ".join(rng.choice(words) for _ in range(2500))[:5000]
    retrieval = retrieve(os_client, dict.fromkeys(ALL, 10), understand(text, lexicon), long_context)
    assert {n: r.error for n, r in retrieval.results.items() if r.error} == {}


HOSTILE = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            '"',
            "'",
            "\\",
            '{"a": 1}',
            "}}{{",
            "{{#toJson}}x{{/toJson}}",
            "{{size}}",
            "</script>",
            '" } ], "size": 10000, "x": [ {',
            "\x00\x01\x1b[31m",
            "a" * 512,
            "ünïcødé 😀 你好",
            "* ? AND OR NOT ~ ^ :",
            "\u202e\u200b",
            "-1",
            "NaN",
            "null",
        ]
    ),
)


@given(text=HOSTILE)
@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_hostile_text_gives_results_or_nothing_never_a_server_error(
    os_client: OpenSearch, music: tuple[StrategyContext, Lexicon], text: str
) -> None:
    context, lexicon = music
    retrieval = retrieve(os_client, dict.fromkeys(ALL, 5), understand(text, lexicon), context)
    for result in retrieval.results.values():
        assert result.error is None, (text, result.strategy, result.error)
        assert len(result.candidates) <= 5
