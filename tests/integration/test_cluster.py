"""A three-node cluster on loopback, every index with one replica: losing a node (the client's
first host, killed) keeps search and feedback working, and no decision or event is lost."""

from __future__ import annotations

import os
import signal
import subprocess
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
from ltrr_os.memory._memory import OBSERVED
from ltrr_os.models import ModelStore
from ltrr_os.opensearch import connect
from ltrr_os.policy import FixedPlanPolicy, policy_from_bytes

from ..conftest import REPO
from .conftest import MUSIC, LocalNodes, free_ports, load_music, local_nodes
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


def _memory_snapshot(client: OpenSearch, settings: LtrrSettings) -> dict[str, dict[str, float]]:
    index = settings.index_name("catalog")
    client.indices.refresh(index=index)
    hits = helpers.scan(client, index=index, query={"query": OBSERVED, "_source": ["q2e"]})
    return {hit["_id"]: hit["_source"].get("q2e") or {} for hit in hits}


def _checkpoint_batch(client: OpenSearch, settings: LtrrSettings) -> int:
    found = client.get(index=settings.index_name("state"), id="learner-checkpoint", ignore=404)
    return int(found["_source"]["payload"]["batch"]) if found.get("found") else 0


def test_three_servers_and_a_learner_killed_midway_learn_what_a_replay_learns(
    cluster_settings: LtrrSettings, encoder: Encoder, tmp_path: Path
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

    def start(command: list[str], name: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            command,
            cwd=REPO,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=(tmp_path / f"{name}.err").open("w"),
            text=True,
        )

    first_learner = start([*learn, "--lease", "3"], "learner-1")
    servers = [
        start([sys.executable, "-m", "tests.integration._serve", f"server-{n}", "30"], f"s{n}")
        for n in range(3)
    ]
    wait_for(lambda: _checkpoint_batch(admin, own) >= 1, 120, "the learner's first batch")
    first_learner.send_signal(signal.SIGKILL)
    first_learner.wait(10)
    second_learner = start([*learn, "--lease", "3"], "learner-2")
    acknowledged: dict[str, list[str]] = {"search": [], "event": []}
    for server in servers:
        output, _ = server.communicate(timeout=300)
        assert server.returncode == 0, (tmp_path / f"s{servers.index(server)}.err").read_text()
        for line in output.splitlines():
            kind, _, value = line.partition(" ")
            acknowledged[kind].append(value)
    time.sleep(own.reward_window_s + 2)  # every search settled in the log by now
    second_learner.send_signal(signal.SIGTERM)
    second_learner.wait(60)
    Learner(admin, own, config=LearnerConfig(lag_s=0)).run_once()

    queries, events = logged(own)
    assert sorted(queries) == sorted(acknowledged["search"])
    assert sorted(events) == sorted(set(acknowledged["event"]))
    assert set(queries.values()) | set(events.values()) == {1}
    learned_memory = _memory_snapshot(admin, own)
    store = ModelStore(admin, own)
    pointer = store.pointer("policy", "bandit")
    assert pointer is not None
    live = policy_from_bytes(store.load("policy", "bandit", pointer.version)[1])
    profiles = ProfileStore(admin, own).read(
        f"server-{n}-user-{u}" for n in range(3) for u in range(3)
    )
    assert all(profile.engagements > 0 for profile in profiles.values())

    report = Learner(admin, own, config=LearnerConfig(lag_s=0)).rebuild(MUSIC)
    replayed_memory = _memory_snapshot(admin, own)
    assert learned_memory.keys() == replayed_memory.keys()
    for entity, keys in learned_memory.items():
        assert keys == pytest.approx(replayed_memory[entity], rel=1e-9), entity
    replayed_profiles = ProfileStore(admin, own).read(profiles)
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
