"""A cache of retrieval under the pipeline, for benchmarks that ask the same thing many times.

Strategies rank deterministically (ties by id), so the first n hits of a strategy at size N >= n
are what a request at size n returns: the cache keeps each strategy's list at the largest size
any plan may draw (`size`), fetched once per query text (and per memory namespace and memory
version for the memory strategy), and serves every plan from it. (The vector strategy explores
more of the graph for a larger k, so its short lists are at least as good as a request at that
size would give.) A list is keyed by what its strategy asks (its parameters but the size: the
user's taste, an expansion's seeds, the hour of a fresh search, the exploration seed, which
must be seeded per text or its samples would be cached with the text). Only `invalidate` (the
memory of a query changed) and `catalog_changed` (entities were added) make it fetch again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from opensearchpy import OpenSearch

from .._errors import LtrrError, OpenSearchUnavailableError
from ..memory import namespaced
from ..strategies import (
    Retrieval,
    StrategyContext,
    StrategyResult,
    get_strategy,
    retrieve_many,
    strategies,
)
from ..understanding import UnderstoodQuery

ATTEMPTS = 4
BACKOFF_S = 2.0
TIMEOUT_MS = 30_000
_SIZED = frozenset({"size", "k", "timeout"})


def _asked(name: str, query: UnderstoodQuery, context: StrategyContext) -> str:
    """What a strategy asks OpenSearch for this query, whatever the size: its parameters
    (the taste of the user, the seeds of an expansion, the time of a fresh search...)."""
    params = get_strategy(name).params(query, context, 1)
    if params is None:
        return ""
    asked = {k: v for k, v in params.items() if k not in _SIZED}
    return hashlib.sha1(json.dumps(asked, sort_keys=True).encode()).hexdigest()


class CachedRetriever:
    """A `Retriever` over `retrieve` that fetches each list once (see the module docstring)."""

    def __init__(self, client: OpenSearch, size: int, namespaces: Sequence[str] = ()) -> None:
        self._client = client
        self.size = size
        self.namespaces = list(namespaces)
        """Memory namespaces fetched together: a miss for one fetches every one's list."""
        self._lists: dict[tuple[str, str, str, int, str], StrategyResult] = {}
        self._versions: dict[str, int] = defaultdict(int)
        self._memory = {n for n, s in strategies().items() if s.source_type == "memory"}
        self.round_trips = 0
        self.catalog_version = 0
        """Bumped when entities were added: every list is fetched again."""

    def _key(
        self, name: str, query: UnderstoodQuery, context: StrategyContext
    ) -> tuple[str, str, str, int, str]:
        if name in self._memory:
            keys = [namespaced(k, context.memory_namespace) for k in query.memory_keys]
            version = sum(self._versions[k] for k in keys)
            return (name, query.text, context.memory_namespace, version, "")
        return (name, query.text, "", self.catalog_version, _asked(name, query, context))

    def __call__(
        self, plan: Mapping[str, int], query: UnderstoodQuery, context: StrategyContext
    ) -> Retrieval:
        started = time.perf_counter()
        keys = {name: self._key(name, query, context) for name in plan}  # each computed once
        missing = {name: key for name, key in keys.items() if key not in self._lists}
        if missing:
            requests = [(context, missing)]
            if any(name in self._memory for name in missing):
                for namespace in self.namespaces:  # the other policies will ask for theirs
                    other = replace(context, memory_namespace=namespace)
                    theirs = {n: self._key(n, query, other) for n in self._memory}
                    absent = {n: k for n, k in theirs.items() if k not in self._lists}
                    if namespace != context.memory_namespace and absent:
                        requests.append((other, absent))
            fetched = self._fetch(
                [(dict.fromkeys(wanted, self.size), query, ctx) for ctx, wanted in requests]
            )
            for (_, wanted), retrieval in zip(requests, fetched, strict=True):
                for name, key in wanted.items():
                    self._lists[key] = retrieval.results[name]
        results = {}
        for name, size in plan.items():
            full = self._lists[keys[name]]
            results[name] = full.model_copy(
                update={"size": size, "candidates": full.candidates[:size]}
            )
        return Retrieval(results=results, round_trip_ms=(time.perf_counter() - started) * 1000)

    def _fetch(
        self, requests: list[tuple[Mapping[str, int], UnderstoodQuery, StrategyContext]]
    ) -> list[Retrieval]:
        """The full lists, however long they take: a list cut short by a timeout or a failed
        shard would skew every plan drawn from it for the rest of the run."""
        requests = [
            (plan, query, replace(context, timeout_ms=max(context.timeout_ms, TIMEOUT_MS)))
            for plan, query, context in requests
        ]
        problem = ""
        for attempt in range(ATTEMPTS):
            if attempt:
                time.sleep(BACKOFF_S * 2 ** (attempt - 1))  # an overloaded node needs a breath
            try:
                fetched = retrieve_many(self._client, requests)
            except OpenSearchUnavailableError as exc:
                problem = str(exc)
                continue
            self.round_trips += 1
            if not any(retrieval.partial for retrieval in fetched):
                return fetched
            problem = "; ".join(
                f"{name}: {result.error or 'timed out'}"
                for retrieval in fetched
                for name, result in retrieval.results.items()
                if result.error or result.timed_out
            )
        text = requests[0][1].text
        raise LtrrError(f"retrieval failed {ATTEMPTS} times for {text!r}: {problem}")

    def catalog_changed(self) -> None:
        """Entities were added to the catalog: fetch every list again."""
        self.catalog_version += 1
        self._lists.clear()

    def invalidate(self, memory_keys: Iterable[str]) -> None:
        """The memory of these (namespaced) keys changed: fetch their memory lists again."""
        for key in memory_keys:
            self._versions[key] += 1
