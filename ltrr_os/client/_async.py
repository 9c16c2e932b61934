"""AsyncLTRRClient: the client for asyncio code, on opensearch-py's asyncio transport.

A search's requests (the profile lookup, the one `_msearch/template`) go through
`AsyncOpenSearch`, so the loop serves other searches while OpenSearch answers; the stages between
them (understanding, the policy, features, ranking: a few milliseconds of CPU) run on the loop.
What touches the disk (the spool's fsync) and what happens in the background (spool delivery,
model reloads, an embedded learner) are the synchronous client's, run in worker threads: the
loop never waits on the disk, and the learned state is the same whichever client serves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from opensearchpy.exceptions import OpenSearchException

from .._errors import LtrrError
from ..config import LtrrSettings
from ..feedback import FeedbackEvent, Profile, ProfileStore
from ..learning import LearnerReport
from ..opensearch import connect_async
from ..policy import UserProfile
from ..strategies import retrieve_many_async
from ._client import LTRRClient, _since
from ._models import FeedbackReceipt, SearchContext, SearchResponse

if TYPE_CHECKING:
    from opensearchpy import AsyncOpenSearch

log = logging.getLogger(__name__)


class AsyncLTRRClient:
    """Searches and feedback for asyncio code. Open it with `async with AsyncLTRRClient(...)`
    or `client = await AsyncLTRRClient.open(...)`: connecting, reading the catalog's schema and
    lexicon and loading the encoder happen there, off the loop. Options are `LTRRClient`'s."""

    def __init__(self, settings: LtrrSettings, **options: Any) -> None:
        """Nothing is contacted or loaded here (a constructor cannot be awaited)."""
        self.settings = settings
        self._options = options
        self._sync: LTRRClient | None = None
        self._os: AsyncOpenSearch | None = None

    @classmethod
    async def open(cls, settings: LtrrSettings, **options: Any) -> AsyncLTRRClient:
        """A client ready to serve."""
        client = cls(settings, **options)
        await client._start()
        return client

    async def _start(self) -> None:
        if self._sync is not None:
            return
        self._os = connect_async(self.settings)
        try:
            self._sync = await asyncio.to_thread(LTRRClient, self.settings, **self._options)
        except BaseException:
            await self._os.close()
            self._os = None
            raise

    @property
    def sync(self) -> LTRRClient:
        """The synchronous client this one shares its state with (policy, ranker, spool)."""
        if self._sync is None:
            raise LtrrError(
                "the client is not open: use `async with AsyncLTRRClient(...)` or "
                "`await AsyncLTRRClient.open(...)`"
            )
        return self._sync

    async def search(
        self, query: str, context: SearchContext | None = None, limit: int = 10
    ) -> SearchResponse:
        """`LTRRClient.search`, its requests awaited."""
        sync = self.sync
        assert self._os is not None
        started = time.perf_counter()
        text, context = sync._check(query, context, limit)
        planned = sync._pipeline.plan(
            text,
            policy=sync.policy,
            user=await self._profile(sync, context.user_id),
            moment=context.timestamp or datetime.now(UTC),
        )
        clock = time.perf_counter()
        [retrieval] = await retrieve_many_async(self._os, [planned.request])
        if (second := sync._pipeline.expansion(planned, retrieval)) is not None:
            [expanded] = await retrieve_many_async(self._os, [second])
            retrieval = sync._pipeline.combined(retrieval, expanded)
        planned.timings_ms["retrieve"] = _since(clock)
        served = sync._pipeline.finish(planned, retrieval, ranker=sync.ranker, limit=limit)
        log_ms = await asyncio.to_thread(sync._log_search, served, context)
        return sync._respond(served, context, log_ms, started)

    async def _profile(self, sync: LTRRClient, user_id: str | None) -> UserProfile:
        if user_id is None:
            return UserProfile()
        if (cached := sync._profiles.cached(user_id)) is not None:
            return cached
        assert self._os is not None
        try:
            doc = await self._os.get(
                index=self.settings.index_name("profiles"),
                id=user_id,
                ignore=404,
                request_timeout=self.settings.search_timeout_ms / 1000,
            )
        except OpenSearchException as exc:
            log.warning("profile of %s unavailable (%s); searching without it", user_id, exc)
            return UserProfile(user_id=user_id)
        profile = (ProfileStore.parse(doc) or Profile(user_id=user_id)).view()
        sync._profiles.remember(user_id, profile)
        return profile

    async def feedback(
        self, events: Sequence[FeedbackEvent | Mapping[str, Any]]
    ) -> FeedbackReceipt:
        """`LTRRClient.feedback`: durable on return (the spool's fsync runs off the loop)."""
        return await asyncio.to_thread(self.sync.feedback, events)

    async def flush(self) -> int:
        """Deliver what the spool holds now; returns how many records are still pending."""
        return await asyncio.to_thread(self.sync.flush)

    async def settle(self, force: bool = False) -> LearnerReport:
        """`LTRRClient.settle` (embedded learning)."""
        return await asyncio.to_thread(self.sync.settle, force)

    async def save(self) -> None:
        """`LTRRClient.save` (embedded learning)."""
        await asyncio.to_thread(self.sync.save)

    async def reload_models(self) -> None:
        """`LTRRClient.reload_models`: look for newly promoted models now."""
        await asyncio.to_thread(self.sync.reload_models)

    async def close(self) -> None:
        """`LTRRClient.close`, then the asyncio connections."""
        sync, connection = self._sync, self._os
        self._sync, self._os = None, None
        try:
            if sync is not None:
                await asyncio.to_thread(sync.close)
        finally:
            if connection is not None:
                await connection.close()

    async def __aenter__(self) -> AsyncLTRRClient:
        await self._start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()
