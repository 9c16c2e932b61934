"""The node (whichever way it was started) does everything ltrr-os needs, proven by using it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from opensearchpy import OpenSearch, helpers

from ltrr_os.config import LtrrSettings

pytestmark = pytest.mark.smoke

DIM = 384
_rng = np.random.default_rng(7)
VECTORS = {doc_id: _rng.normal(size=DIM) for doc_id in ("ts", "ts2", "bey", "acdc", "mj")}
DOCS: dict[str, dict[str, Any]] = {
    "ts": {
        "title": "Love Story",
        "artist": "Taylor Swift",
        "genre": ["country", "pop"],
        "popularity": 80.0,
        "q2e": {"love story": 5.0, "love": 1.0},
    },
    "ts2": {
        "title": "Love Story",
        "artist": "Taylor Swift Tribute Band",
        "genre": ["pop"],
        "popularity": 3.0,
        "q2e": {"love": 0.5},
    },
    "bey": {
        "title": "Crazy in Love",
        "artist": "Beyoncé",
        "genre": ["r&b"],
        "popularity": 75.0,
        "q2e": {"love": 4.0},
    },
    "acdc": {
        "title": "Highway to Hell",
        "artist": "AC/DC",
        "genre": ["hard rock"],
        "popularity": 70.0,
        "q2e": {"highway": 2.0},
    },
    "mj": {
        "title": "Billie Jean",
        "artist": "Michael Jackson",
        "genre": ["pop"],
        "popularity": 90.0,
        "q2e": {"billie jean": 6.0},
    },
}
MAPPING = {
    "settings": {
        "number_of_shards": 1,
        "number_of_replicas": 0,
        "index.knn": True,
        "analysis": {
            "analyzer": {
                "folded": {"tokenizer": "standard", "filter": ["lowercase", "asciifolding"]}
            }
        },
    },
    "mappings": {
        "properties": {
            "title": {
                "type": "text",
                "analyzer": "standard",
                "fields": {"folded": {"type": "text", "analyzer": "folded"}},
            },
            "artist": {
                "type": "text",
                "analyzer": "folded",
                "fields": {"raw": {"type": "keyword"}},
            },
            "genre": {"type": "keyword"},
            "popularity": {"type": "rank_feature"},
            "plays": {"type": "float"},
            "q2e": {"type": "rank_features"},
            "embedding": {
                "type": "knn_vector",
                "dimension": DIM,
                "method": {"name": "hnsw", "engine": "lucene", "space_type": "cosinesimil"},
            },
        }
    },
}


@pytest.fixture(scope="module")
def index(os_client: OpenSearch, settings: LtrrSettings) -> Iterator[str]:
    name = settings.index_name("capabilities")
    os_client.indices.create(index=name, body=MAPPING)
    actions = [
        {
            "_index": name,
            "_id": doc_id,
            **doc,
            "plays": doc["popularity"] * 1000,
            "embedding": VECTORS[doc_id].tolist(),
        }
        for doc_id, doc in DOCS.items()
    ]
    indexed, errors = helpers.bulk(os_client, actions, refresh=True)
    assert (indexed, errors) == (len(DOCS), [])
    yield name
    os_client.indices.delete(index=name)


def ids(response: dict[str, Any]) -> list[str]:
    return [hit["_id"] for hit in response["hits"]["hits"]]


def search(client: OpenSearch, index: str, query: dict[str, Any], size: int = 10) -> list[str]:
    return ids(client.search(index=index, body={"query": query, "size": size}))


def test_multi_match_with_fuzziness_finds_misspelled_artist(
    os_client: OpenSearch, index: str
) -> None:
    query = {
        "multi_match": {"query": "tayler swfit", "fields": ["title", "artist"], "fuzziness": "AUTO"}
    }
    assert search(os_client, index, query)[:2] == ["ts", "ts2"]


def test_ascii_folding_matches_accents(os_client: OpenSearch, index: str) -> None:
    assert search(os_client, index, {"match": {"artist": "beyonce"}}) == ["bey"]


def test_knn_returns_nearest_vector_first(os_client: OpenSearch, index: str) -> None:
    near_mj = (VECTORS["mj"] + 0.05 * _rng.normal(size=DIM)).tolist()
    hits = search(os_client, index, {"knn": {"embedding": {"vector": near_mj, "k": 3}}}, size=3)
    assert hits[0] == "mj"


def test_rank_feature_orders_by_popularity(os_client: OpenSearch, index: str) -> None:
    query = {"rank_feature": {"field": "popularity", "saturation": {"pivot": 50}}}
    assert search(os_client, index, query) == ["mj", "ts", "bey", "acdc", "ts2"]


def test_rank_features_orders_by_query_to_entity_score(os_client: OpenSearch, index: str) -> None:
    query = {"rank_feature": {"field": "q2e.love", "linear": {}}}
    assert search(os_client, index, query) == ["bey", "ts", "ts2"]


def test_function_score_lifts_the_more_popular_of_equal_titles(
    os_client: OpenSearch, index: str
) -> None:
    query = {
        "function_score": {
            "query": {"match": {"title": "love story"}},
            "functions": [{"field_value_factor": {"field": "plays", "modifier": "log1p"}}],
            "boost_mode": "multiply",
        }
    }
    plain = search(os_client, index, {"match": {"title": "love story"}})
    assert set(plain[:2]) == {"ts", "ts2"}
    assert search(os_client, index, query)[:2] == ["ts", "ts2"]


def test_stored_templates_run_together_in_one_msearch_with_their_own_sizes(
    os_client: OpenSearch, index: str, settings: LtrrSettings
) -> None:
    lexical = settings.index_name("probe-lexical")
    feature = settings.index_name("probe-feature")
    os_client.put_script(
        id=lexical,
        body={
            "script": {
                "lang": "mustache",
                "source": (
                    '{"size": {{size}}, "query": {"match": {"title": '
                    "{{#toJson}}match{{/toJson}} }}}"
                ),
            }
        },
    )
    os_client.put_script(
        id=feature,
        body={
            "script": {
                "lang": "mustache",
                "source": (
                    '{"size": {{size}}, "query": {"rank_feature": {"field": "popularity"}}}'
                ),
            }
        },
    )
    hostile = 'love" } ], "size": 1000, {{size}} \\'
    body = [
        {"index": index},
        {"id": lexical, "params": {"size": 1, "match": {"query": "love"}}},
        {"index": index},
        {"id": feature, "params": {"size": 3}},
        {"index": index},
        {"id": lexical, "params": {"size": 5, "match": {"query": hostile}}},
    ]
    responses = os_client.msearch_template(body=body)["responses"]
    assert [r.get("status") for r in responses] == [200, 200, 200]
    assert [len(ids(r)) for r in responses] == [1, 3, 3]
    assert ids(responses[1]) == ["mj", "ts", "bey"]
    os_client.delete_script(id=lexical)
    os_client.delete_script(id=feature)
