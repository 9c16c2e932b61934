"""Run the chosen strategies in one `_msearch/template` round trip and collect their candidates."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import ConnectionTimeout, TransportError
from pydantic import BaseModel, Field

from .._errors import OpenSearchUnavailableError, QueryError
from ..understanding import UnderstoodQuery
from ._base import StrategyContext
from ._registry import get_strategy

if TYPE_CHECKING:
    from opensearchpy import AsyncOpenSearch

MAX_STRATEGY_SIZE = 1000


class Candidate(BaseModel):
    """One hit of one strategy."""

    id: str
    score: float
    rank: int
    source: dict[str, Any] = Field(default_factory=dict)
    via: list[str] = Field(
        default_factory=list, description="expansions: the hits it was found from"
    )


class StrategyResult(BaseModel):
    """What one strategy returned; `error` is set when it failed, `skipped` when it had nothing
    to run for this query. Neither means 'found nothing', and learners must tell them apart."""

    strategy: str
    size: int
    candidates: list[Candidate] = Field(default_factory=list)
    took_ms: int = 0
    skipped: bool = False
    timed_out: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.skipped


class Retrieval(BaseModel):
    results: dict[str, StrategyResult]
    round_trip_ms: float

    @property
    def partial(self) -> bool:
        """Some strategy failed or timed out: the candidates are incomplete."""
        return any(r.error is not None or r.timed_out for r in self.results.values())


def _error_text(response: Mapping[str, Any]) -> str:
    error = response.get("error")
    if isinstance(error, Mapping):
        root = (error.get("root_cause") or [error])[0]
        return f"{root.get('type', 'error')}: {root.get('reason', '')}".strip()
    return str(error)


Request = tuple[Mapping[str, int], UnderstoodQuery, StrategyContext]
"""A plan (strategy -> number of candidates) for a query, in its context."""


def retrieve(
    client: OpenSearch,
    plan: Mapping[str, int],
    query: UnderstoodQuery,
    context: StrategyContext,
) -> Retrieval:
    """Run each planned strategy (name -> number of candidates) in one round trip. Limits are
    checked first: nothing out of bounds reaches OpenSearch."""
    return retrieve_many(client, [(plan, query, context)])[0]


def retrieve_many(client: OpenSearch, requests: Sequence[Request]) -> list[Retrieval]:
    """Several plans (each for its query and context) in one `_msearch/template` round trip."""
    batch = MultiSearch(requests)
    started = time.perf_counter()
    if batch.bodies:
        try:
            responses = client.msearch_template(body=batch.bodies, request_timeout=batch.timeout_s)
        except (OSConnectionError, ConnectionTimeout, TransportError) as exc:
            raise _unavailable(exc, batch.timeout_s) from None
        return batch.collect(responses["responses"], started)
    return batch.collect([], started)


async def retrieve_many_async(
    client: AsyncOpenSearch, requests: Sequence[Request]
) -> list[Retrieval]:
    """`retrieve_many` on an asyncio client: the same requests, the same results."""
    batch = MultiSearch(requests)
    started = time.perf_counter()
    if batch.bodies:
        try:
            responses = await client.msearch_template(
                body=batch.bodies, request_timeout=batch.timeout_s
            )
        except (OSConnectionError, ConnectionTimeout, TransportError) as exc:
            raise _unavailable(exc, batch.timeout_s) from None
        return batch.collect(responses["responses"], started)
    return batch.collect([], started)


def _unavailable(exc: Exception, timeout_s: float) -> OpenSearchUnavailableError:
    if isinstance(exc, ConnectionTimeout):
        return OpenSearchUnavailableError(
            f"OpenSearch did not answer the search within {timeout_s:.1f} s (overloaded or frozen?)"
        )
    if isinstance(exc, OSConnectionError):
        return OpenSearchUnavailableError(f"OpenSearch did not answer the search: {exc}")
    assert isinstance(exc, TransportError)
    return OpenSearchUnavailableError(
        f"OpenSearch refused the search ({exc.status_code}): {exc.error}"
    )


class MultiSearch:
    """The `_msearch/template` body of several plans (limits checked first: nothing out of
    bounds reaches OpenSearch), and the reading of its responses back into each plan's
    results. Transport-free, so the sync and the asyncio round trips share it."""

    def __init__(self, requests: Sequence[Request]) -> None:
        self.requests = requests
        self.bodies: list[dict[str, Any]] = []
        self._sent: list[tuple[int, str, int]] = []  # (request, strategy, size) of each item
        self._results: list[dict[str, StrategyResult]] = []
        for number, (plan, query, context) in enumerate(requests):
            _check(plan, query, context)
            index = context.settings.index_name("catalog")
            found: dict[str, StrategyResult] = {}
            for name, size in plan.items():
                strategy = get_strategy(name)
                params = strategy.params(query, context, size) if size > 0 else None
                if params is None:
                    found[name] = StrategyResult(strategy=name, size=size, skipped=True)
                    continue
                self.bodies += [
                    {"index": index},
                    {"id": strategy.template_id(context.settings), "params": params},
                ]
                self._sent.append((number, name, size))
            self._results.append(found)
        self.timeout_s = max((c.timeout_ms for _, _, c in requests), default=0) / 1000 + 1.0

    def collect(self, responses: Sequence[Mapping[str, Any]], started: float) -> list[Retrieval]:
        for (number, name, size), response in zip(self._sent, responses, strict=True):
            self._results[number][name] = _result(name, size, response)
        round_trip = (time.perf_counter() - started) * 1000
        return [
            Retrieval(results={name: found[name] for name in plan}, round_trip_ms=round_trip)
            for found, (plan, _, _) in zip(self._results, self.requests, strict=True)
        ]


def _check(plan: Mapping[str, int], query: UnderstoodQuery, context: StrategyContext) -> None:
    if len(query.text) > context.max_query_chars:
        raise QueryError(
            f"query is {len(query.text)} characters long (limit {context.max_query_chars})"
        )
    for name, size in plan.items():
        if (
            isinstance(size, bool)
            or not isinstance(size, int)
            or not 0 <= size <= MAX_STRATEGY_SIZE
        ):
            raise QueryError(f"size of {name!r} must be an integer from 0 to {MAX_STRATEGY_SIZE}")


def _result(name: str, size: int, response: Mapping[str, Any]) -> StrategyResult:
    if "error" in response:
        return StrategyResult(strategy=name, size=size, error=_error_text(response))
    hits = response.get("hits", {}).get("hits", [])
    shards = response.get("_shards", {})
    failure = None
    if shards.get("failed"):
        reasons = [f.get("reason", {}).get("reason", "") for f in shards.get("failures", [])]
        failure = f"{shards['failed']} shard(s) failed: {'; '.join(reasons)[:300]}"
    return StrategyResult(
        strategy=name,
        size=size,
        took_ms=int(response.get("took", 0)),
        timed_out=bool(response.get("timed_out")),
        error=failure,
        candidates=[
            Candidate(
                id=hit["_id"],
                score=float(hit.get("_score") or 0.0),
                rank=rank,
                source=hit.get("_source") or {},
                via=hit.get("matched_queries") or [],
            )
            for rank, hit in enumerate(hits, start=1)
        ],
    )
