"""A three-node cluster on loopback, every index with one replica: losing a node (the client's
first host, killed) keeps search and feedback working, and no decision or event is lost."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opensearchpy import OpenSearch, helpers

from ltrr_os import LTRRClient, LtrrSettings, SearchResponse
from ltrr_os.embedding import Encoder
from ltrr_os.feedback import ProfileStore
from ltrr_os.learning import Learner, LearnerConfig
from ltrr_os.learning._checkpoint import CHECKPOINT_ID, Checkpoint
from ltrr_os.memory._memory import OBSERVED
from ltrr_os.models import ModelStore
from ltrr_os.opensearch import connect
from ltrr_os.policy import FixedPlanPolicy, policy_from_bytes

from ._serve import lines
from .conftest import MUSIC, LocalNodes, Processes, free_ports, load_music, local_nodes
from .test_faults import QUERIES, click, logged, wait_for


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalNodes]:
    with local_nodes(free_ports(3, start=9400), nodes=3) as nodes:
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
    assert len(nodes) == 6  # catalog, state, ubi_queries, ubi_events, models, profiles
    assert all(copies.keys() == {"p", "r"} for copies in nodes.values())
    assert all(copies["p"] != copies["r"] for copies in nodes.values())


def memory_snapshot(client: OpenSearch, settings: LtrrSettings) -> dict[str, dict[str, float]]:
    index = settings.index_name("catalog")
    client.indices.refresh(index=index)
    hits = helpers.scan(client, index=index, query={"query": OBSERVED, "_source": ["q2e"]})
    return {hit["_id"]: hit["_source"].get("q2e") or {} for hit in hits}


def checkpoint(client: OpenSearch, settings: LtrrSettings) -> Checkpoint:
    """The learner's stored checkpoint (an empty one before its first batch)."""
    found = client.get(index=settings.index_name("state"), id=CHECKPOINT_ID, ignore=404)
    return Checkpoint.model_validate(found["_source"]["payload"] if found.get("found") else {})


def assert_a_replay_learns_the_same(
    client: OpenSearch, settings: LtrrSettings, users: list[str]
) -> None:
    """The memory, these users' profiles and the policy the learner learned online are what a
    replay of the same logs from scratch builds."""
    learned_memory = memory_snapshot(client, settings)
    store = ModelStore(client, settings)
    pointer = store.pointer("policy", "bandit")
    assert pointer is not None
    live = policy_from_bytes(store.load("policy", "bandit", pointer.version)[1])
    profiles = ProfileStore(client, settings).read(users)
    assert all(profile.engagements > 0 for profile in profiles.values())

    report = Learner(client, settings, config=LearnerConfig(lag_s=0)).rebuild(MUSIC)
    replayed_memory = memory_snapshot(client, settings)
    assert learned_memory.keys() == replayed_memory.keys()
    for entity, keys in learned_memory.items():
        assert keys == pytest.approx(replayed_memory[entity], rel=1e-9), entity
    replayed_profiles = ProfileStore(client, settings).read(profiles)
    assert {u: p.counts for u, p in replayed_profiles.items()} == {
        u: p.counts for u, p in profiles.items()
    }
    assert {u: p.engagements for u, p in replayed_profiles.items()} == {
        u: p.engagements for u, p in profiles.items()
    }
    [rebuilt] = [v for v in store.versions("policy") if v.reason.startswith("rebuilt")]
    replayed = policy_from_bytes(store.load("policy", "bandit", rebuilt.version)[1])
    assert (replayed.updates, replayed.history) == (live.updates, live.history)
    assert report.policy_lessons == live.updates
    assert replayed.to_bytes().partition(b"\n")[2] == live.to_bytes().partition(b"\n")[2]


def test_three_servers_and_a_learner_killed_midway_learn_what_a_replay_learns(
    cluster_settings: LtrrSettings, encoder: Encoder, tmp_path: Path, processes: Processes
) -> None:
    """Three serving processes and one learner on the cluster; the learner is killed (SIGKILL)
    while they serve and another takes over. Every acknowledged search and event is stored
    once; the memory, the profiles and the policy hold every server's lessons, exactly as a
    replay of the same logs from scratch builds them."""
    own = cluster_settings.model_copy(
        update={
            "index_prefix": f"{cluster_settings.index_prefix}servers-",
            "spool_dir": tmp_path / "spool",
            "reward_window_s": 2.0,
        }
    )
    admin = connect(own)
    load_music(admin, own, encoder, {"Queen", "Taylor Swift"})
    environment = {
        **os.environ,
        "LTRR_OPENSEARCH_URL": own.opensearch_url,
        "LTRR_INDEX_PREFIX": own.index_prefix,
        "LTRR_INDEX_REPLICAS": "1",
        "LTRR_SPOOL_DIR": str(own.spool_dir),  # shared: each process claims a slot of it
        "LTRR_REWARD_WINDOW_S": "2",
        "LTRR_SEARCH_TIMEOUT_MS": "5000",  # three JVMs and five processes on two cores
    }
    learn = [sys.executable, "-m", "ltrr_os", "learn", "--lag", "1", "--poll", "0.2"]

    first_learner = processes.start("learner-1", [*learn, "--lease", "3"], environment)
    servers = [
        processes.start(
            f"s{n}",
            [sys.executable, "-m", "tests.integration._serve", f"server-{n}", "30"],
            environment,
        )
        for n in range(3)
    ]
    wait_for(lambda: checkpoint(admin, own).batch >= 1, 120, "the learner's first batch")
    first_learner.send_signal(signal.SIGKILL)
    first_learner.wait(10)
    second_learner = processes.start("learner-2", [*learn, "--lease", "3"], environment)
    for n, server in enumerate(servers):
        assert server.wait(300) == 0, processes.errors(f"s{n}")
    acknowledged = lines("".join(processes.output(f"s{n}") for n in range(3)))
    time.sleep(own.reward_window_s + 2)  # every search settled in the log by now
    second_learner.send_signal(signal.SIGTERM)
    second_learner.wait(60)
    Learner(admin, own, config=LearnerConfig(lag_s=0)).run_once()

    queries, events = logged(own)
    assert sorted(queries) == sorted(acknowledged["search"])
    assert sorted(events) == sorted(set(acknowledged["event"]))
    assert set(queries.values()) | set(events.values()) == {1}
    assert_a_replay_learns_the_same(
        admin, own, [f"server-{n}-user-{u}" for n in range(3) for u in range(3)]
    )


def test_losing_a_node_keeps_search_and_feedback_working(
    cluster_settings: LtrrSettings, cluster: LocalNodes, encoder: Encoder, tmp_path: Path
) -> None:
    settings = cluster_settings.model_copy(
        update={"model_dir": tmp_path / "models", "spool_dir": tmp_path / "spool"}
    )
    responses: list[SearchResponse] = []
    # Every strategy at once: a learned plan may draw from memory alone and find nothing.
    with LTRRClient(settings, encoder=encoder, policy=FixedPlanPolicy({"*": 20})) as client:

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
