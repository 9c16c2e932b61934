"""`ltrr doctor`: prove a cluster has every capability ltrr-os relies on, by using each once."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import TransportError
from pydantic import BaseModel

from ..strategies import strategies
from ._client import opensearch_error
from ._templates import ingest_pipeline, templates_dir


class Check(BaseModel):
    name: str
    ok: bool
    detail: str


_PROBE_MAPPING: dict[str, Any] = {
    "settings": {
        "number_of_shards": 1,
        "number_of_replicas": 0,
        "index.knn": True,
        "analysis": {
            "filter": {"probe_prefix": {"type": "edge_ngram", "min_gram": 1, "max_gram": 10}},
            "analyzer": {
                "probe_folded": {
                    "tokenizer": "standard",
                    "filter": ["lowercase", "asciifolding", "probe_prefix"],
                }
            },
        },
    },
    "mappings": {
        "properties": {
            "title": {"type": "text", "analyzer": "probe_folded", "search_analyzer": "standard"},
            "genre": {"type": "keyword"},
            "popularity": {"type": "rank_feature"},
            "q2e": {"type": "rank_features"},
            "embedding": {
                "type": "knn_vector",
                "dimension": 4,
                "method": {"name": "hnsw", "engine": "lucene", "space_type": "cosinesimil"},
            },
        }
    },
}


def cluster_version(client: OpenSearch) -> str:
    """The cluster's version, or OpenSearchUnavailableError with the reason it is not reachable."""
    try:
        info = client.info()
    except TransportError as exc:
        hosts = client.transport.hosts or []
        urls = [
            f"{'https' if h.get('use_ssl') else 'http'}://{h['host']}:{h['port']}"
            f"{h.get('url_prefix', '')}"
            for h in hosts
        ]
        raise opensearch_error(exc, ",".join(urls)) from None
    return str(info["version"]["number"])


def run_checks(client: OpenSearch, index_prefix: str) -> Iterator[Check]:
    """Yield one Check per capability; the probe index is removed whatever happens."""
    yield _attempt("templates bootstrap applies are readable", _templates)
    version = cluster_version(client)
    yield Check(name="reachable", ok=True, detail=f"OpenSearch {version}")
    health = client.cluster.health()
    yield Check(
        name="health",
        ok=health["status"] in ("green", "yellow"),
        detail=f"{health['status']}, {health['number_of_nodes']} node(s)",
    )
    index = f"{index_prefix}doctor-{secrets.token_hex(4)}"
    try:
        yield _attempt(
            "index with text, keyword, rank_feature(s) and lucene knn_vector",
            lambda: client.indices.create(index=index, body=_PROBE_MAPPING) and "created",
        )
        yield _attempt(
            "index a document",
            lambda: client.index(
                index=index,
                id="1",
                refresh=True,
                body={
                    "title": "Café Love",
                    "genre": "pop",
                    "popularity": 42.0,
                    "q2e": {"love": 3.0},
                    "embedding": [1.0, 0.0, 0.0, 0.0],
                },
            )["result"],
        )
        for name, query in _PROBE_QUERIES.items():
            yield _attempt(name, _count_hits(client, index, query))
        yield _attempt("mustache template with toJson", _render(client))
        yield _attempt("ingest pipeline (stamps when a UBI document arrives)", _stamp(client))
    finally:
        client.indices.delete(index=index, ignore_unavailable=True)


_PROBE_QUERIES: dict[str, dict[str, Any]] = {
    "BM25 match with ASCII folding and prefixes": {"match": {"title": "caf"}},
    "kNN (lucene, hnsw, cosine)": {"knn": {"embedding": {"vector": [0.9, 0.1, 0, 0], "k": 3}}},
    "rank_feature": {"rank_feature": {"field": "popularity", "saturation": {}}},
    "rank_features": {"rank_feature": {"field": "q2e.love"}},
}


def _count_hits(client: OpenSearch, index: str, query: dict[str, Any]) -> Callable[[], str]:
    def run() -> str:
        hits = client.search(index=index, body={"query": query})["hits"]["total"]["value"]
        if hits != 1:
            raise AssertionError(f"expected 1 hit, got {hits}")
        return "1 hit"

    return run


def _render(client: OpenSearch) -> Callable[[], str]:
    def run() -> str:
        hostile = 'a "quoted" {{tag}} \\ value'
        rendered = client.render_search_template(
            body={
                "source": '{"query": {"match": {"title": {{#toJson}}match{{/toJson}} }}}',
                "params": {"match": {"query": hostile}},
            }
        )
        got = rendered["template_output"]["query"]["match"]["title"]["query"]
        if got != hostile:
            raise AssertionError(f"rendered {got!r}")
        return "parameters arrive JSON-escaped"

    return run


def _templates() -> str:
    """Every component template parses and every strategy's search template is there."""
    root = templates_dir()
    components = [p for p in root.joinpath("components").iterdir() if p.name.endswith(".json")]
    for component in components:
        json.loads(component.read_text(encoding="utf-8"))
    for strategy in strategies().values():
        root.joinpath("search", strategy.template).read_text(encoding="utf-8")
    return f"{len(components)} components, {len(strategies())} search templates in {root}"


def _stamp(client: OpenSearch) -> Callable[[], str]:
    def run() -> str:
        simulated = client.ingest.simulate(
            body={"pipeline": ingest_pipeline(), "docs": [{"_source": {"action_name": "click"}}]}
        )
        stamped = simulated["docs"][0]["doc"]["_source"].get("ingested_at")
        if not stamped:
            raise AssertionError("the pipeline did not set ingested_at")
        return f"ingested_at {stamped}"

    return run


def _attempt(name: str, action: Callable[[], Any]) -> Check:
    try:
        return Check(name=name, ok=True, detail=str(action()))
    except (TransportError, AssertionError, KeyError, OSError, ValueError) as exc:
        return Check(name=name, ok=False, detail=str(exc)[:300])
