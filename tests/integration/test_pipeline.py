"""The search pipeline on a real node: the client serves through it, and the cache a benchmark
puts under it returns exactly what serving would."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from opensearchpy import OpenSearch

from ltrr_os.pipeline import CachedRetriever, SearchPipeline
from ltrr_os.policy import FixedPlanPolicy, UserProfile
from ltrr_os.strategies import retrieve

QUERIES = ["queen", "80s rock", "taylor swift love story", "chill acoustic", "bohemain rapsody"]


@pytest.mark.parametrize("strategy", ["lexical", "structured", "memory", "exploration"])
def test_the_cache_serves_what_a_request_of_that_size_returns(
    strategy: str, pipeline: SearchPipeline, os_client: OpenSearch
) -> None:
    cache = CachedRetriever(os_client, 100)
    for text in QUERIES:
        query = pipeline.understand(text)
        context = replace(pipeline.context, exploration_seed=7)
        for size in (100, 30, 10):
            cached = cache({strategy: size}, query, context).results[strategy]
            real = retrieve(os_client, {strategy: size}, query, context).results[strategy]
            assert [c.id for c in cached.candidates] == [c.id for c in real.candidates], (
                text,
                size,
            )
    assert cache.round_trips == len(QUERIES)


def test_a_search_runs_every_stage_and_records_what_it_showed(pipeline: SearchPipeline) -> None:
    served = pipeline.search(
        "songs by queen",
        policy=FixedPlanPolicy({"*": 20}),
        ranker=pipeline.fused,
        user=UserProfile(),
        moment=datetime.now(UTC),
        limit=5,
    )
    assert set(served.timings_ms) == {
        "understand",
        "decide",
        "retrieve",
        "round_trip",
        "opensearch",
        "rank",
    }
    assert len(served.shown) == 5
    record = served.record(user_id="u", session_id=None, slot_fields=pipeline.slot_fields)
    assert record.results == served.shown
    assert len(record.features) == 5
    assert set(record.candidates) == set(served.decision.plan)
    over = pipeline.search(
        "songs by queen",
        policy=FixedPlanPolicy({"*": 200}),
        ranker=pipeline.fused,
        user=UserProfile(),
        moment=datetime.now(UTC),
        limit=5,
    )
    assert over.decision.candidate_cost <= 400  # a static plan is scaled into the budget
