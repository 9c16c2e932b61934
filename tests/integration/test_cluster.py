"""A three-node cluster on loopback, every index with one replica: losing a node (the client's
first host, killed) keeps search and feedback working, and no decision or event is lost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ltrr_os import LTRRClient, LtrrSettings, SearchResponse
from ltrr_os.embedding import Encoder
from ltrr_os.opensearch import connect

from .conftest import LocalNodes, load_music, local_nodes
from .test_faults import QUERIES, click, logged, wait_for

CLUSTER_PORT = 9400


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalNodes]:
    with local_nodes(CLUSTER_PORT, nodes=3) as nodes:
        yield nodes


@pytest.fixture(scope="module")
def cluster_settings(
    settings: LtrrSettings, cluster: LocalNodes, encoder: Encoder
) -> Iterator[LtrrSettings]:
    own = settings.model_copy(
        update={
            "opensearch_url": cluster.urls,
            "index_prefix": f"{settings.index_prefix}cluster-",
            "index_replicas": 1,
            "reward_window_s": 3600.0,
        }
    )
    admin = connect(own)
    load_music(admin, own, encoder, {"Queen", "Taylor Swift"})
    admin.cluster.health(
        index=f"{own.index_prefix}*",
        wait_for_status="green",
        params={"timeout": "120s"},
        request_timeout=130,
    )
    yield own
    connect(own).indices.delete(index=f"{own.index_prefix}*", expand_wildcards="all")


def test_every_index_has_a_replica_on_another_node(cluster_settings: LtrrSettings) -> None:
    shards = connect(cluster_settings).cat.shards(
        index=f"{cluster_settings.index_prefix}*", format="json"
    )
    nodes: dict[str, dict[str, str]] = {}
    for shard in shards:
        assert shard["state"] == "STARTED", shard
        nodes.setdefault(shard["index"], {})[shard["prirep"]] = shard["node"]
    assert len(nodes) == 4  # catalog, state, ubi_queries, ubi_events
    assert all(copies.keys() == {"p", "r"} for copies in nodes.values())
    assert all(copies["p"] != copies["r"] for copies in nodes.values())


def test_losing_a_node_keeps_search_and_feedback_working(
    cluster_settings: LtrrSettings, cluster: LocalNodes, encoder: Encoder, tmp_path: Path
) -> None:
    settings = cluster_settings.model_copy(
        update={"model_dir": tmp_path / "models", "spool_dir": tmp_path / "spool"}
    )
    responses: list[SearchResponse] = []
    with LTRRClient(settings, encoder=encoder) as client:

        def search_and_click(query: str) -> SearchResponse:
            response = client.search(query, limit=5)
            assert client.feedback([click(response)]).accepted == 1
            responses.append(response)
            return response

        for query in QUERIES:
            search_and_click(query)
        cluster.run("stop", "--node", "1", "--kill")
        after = [search_and_click(query) for query in QUERIES * 2]
        assert [r.errors for r in after if r.partial] == []
        assert all(r.results for r in after)
        wait_for(lambda: client.flush() == 0, 90, "the spool to drain")
    queries, events = logged(settings)
    assert sorted(queries) == sorted(r.search_id for r in responses)
    assert sorted(events) == sorted(f"{r.search_id}-click" for r in responses)
    assert set(queries.values()) | set(events.values()) == {1}
