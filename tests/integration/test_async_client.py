"""The asyncio client on a real node: it opens without blocking the loop, serves concurrent
searches with the sync client's answers, and offers feedback, flush, settle and save."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from ltrr_os import AsyncLTRRClient, LTRRClient, LtrrError
from ltrr_os.client import SearchContext
from ltrr_os.config import LtrrSettings
from ltrr_os.embedding import Encoder
from ltrr_os.learning import LearnerConfig
from ltrr_os.policy import FixedPlanPolicy

from .test_client import ALL_AT_20, ubi_count

QUERIES = ["queen", "bohemian rhapsody", "jolene", "taylor swift love", "rock anthems"] * 4


@pytest.fixture
def async_settings(music_settings: LtrrSettings, tmp_path: Path) -> LtrrSettings:
    return music_settings.model_copy(
        update={
            "spool_dir": tmp_path / "spool",
            "reward_window_s": 3600.0,
            # Twenty searches at once on a node sharing two cores queue: these tests compare
            # answers, so a search that waits must not time out (or come back partial).
            "search_timeout_ms": 15_000,
        }
    )


def test_opening_leaves_the_loop_free_and_nothing_happens_before(
    async_settings: LtrrSettings,
) -> None:
    unreachable = async_settings.model_copy(update={"opensearch_url": "http://127.0.0.1:9"})
    AsyncLTRRClient(unreachable)  # contacts nothing: cannot fail

    async def scenario() -> int:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)
        before = ticks
        client = await AsyncLTRRClient.open(async_settings)  # loads the encoder, reads models
        during = ticks - before
        ticker.cancel()
        await client.close()
        return during

    assert asyncio.run(scenario()) >= 1  # a blocking open lets the ticker run zero times


def test_concurrent_searches_answer_what_the_sync_client_answers(
    async_settings: LtrrSettings, os_client: OpenSearch, encoder: Encoder
) -> None:
    policy = FixedPlanPolicy(ALL_AT_20)
    with LTRRClient(async_settings, policy=policy, opensearch=os_client, encoder=encoder) as sync:
        expected = {q: [r.id for r in sync.search(q, limit=5).results] for q in set(QUERIES)}

    async def scenario() -> list[tuple[str, list[str], str]]:
        async with AsyncLTRRClient(async_settings, policy=policy, encoder=encoder) as client:
            responses = await asyncio.gather(*(client.search(q, limit=5) for q in QUERIES))
            assert await client.flush() == 0
        return [(r.query, [x.id for x in r.results], r.search_id) for r in responses]

    answered = asyncio.run(scenario())
    assert [(query, ids) for query, ids, _ in answered] == [(q, expected[q]) for q in QUERIES]
    ids = {search_id for _, _, search_id in answered}
    assert len(ids) == len(QUERIES)
    assert all(ubi_count(os_client, async_settings, "ubi_queries", s) == 1 for s in ids)


def test_feedback_settle_and_save_under_the_loop(
    async_settings: LtrrSettings, encoder: Encoder
) -> None:
    async def scenario() -> tuple[int, int, int]:
        async with AsyncLTRRClient(
            async_settings,
            encoder=encoder,
            learn="embedded",
            learner_config=LearnerConfig(poll_s=3600),
        ) as client:
            await client.settle(force=True)  # what earlier tests logged is not this test's
            response = await client.search("jolene", SearchContext(user_id="async-fan"))
            receipt = await client.feedback(
                [
                    {
                        "search_id": response.search_id,
                        "action": "playback",
                        "object_id": response.results[0].id,
                        "position": 1,
                        "user_id": "async-fan",
                    }
                ]
            )
            report = await client.settle(force=True)
            await client.save()
            return receipt.accepted, report.policy_lessons, report.events

    assert asyncio.run(scenario()) == (1, 1, 1)


def test_a_client_not_yet_open_says_how_to_open_it(async_settings: LtrrSettings) -> None:
    with pytest.raises(LtrrError, match="async with"):
        asyncio.run(AsyncLTRRClient(async_settings).search("queen"))
