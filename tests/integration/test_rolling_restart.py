"""A rolling restart under traffic: a three-node cluster (three primaries, one replica each),
serving processes searching and sending feedback and a learner learning while nodes are stopped
and started again one after the other. No search fails, every acknowledged search and event is
stored once, and the learner goes on learning through it and ends with what a replay learns.

The default run restarts the first node (every client's first host, and the cluster manager);
`pytest -m slow` restarts every node in turn."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from ltrr_os import LtrrSettings
from ltrr_os.embedding import Encoder
from ltrr_os.learning import Learner, LearnerConfig
from ltrr_os.learning._log import millis
from ltrr_os.opensearch import connect

from ._serve import lines
from .conftest import LocalNodes, Processes, free_ports, load_music, local_nodes
from .test_cluster import assert_a_replay_learns_the_same, checkpoint
from .test_faults import logged, wait_for

log = logging.getLogger(__name__)
SERVERS = 2
SHARD_LOST = re.compile(r"shard\(s\) failed|^search_phase_execution_exception")


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalNodes]:
    with local_nodes(free_ports(3, start=9400), nodes=3) as nodes:
        yield nodes


def _health(client: OpenSearch, status: str, nodes: int) -> None:
    """Wait for the cluster's status; if it never comes, say which shards are unassigned and why."""
    health = client.cluster.health(
        wait_for_status=status,
        wait_for_nodes=str(nodes),
        timeout="120s",
        request_timeout=130,
        ignore=408,
    )
    if health["timed_out"]:
        shards = client.cat.shards(
            format="json", h="index,shard,prirep,state,node,unassigned.reason"
        )
        unassigned = [s for s in shards if s["state"] != "STARTED"]
        explained = client.cluster.allocation_explain(ignore=400)
        pytest.fail(f"not {status} with {nodes} nodes: {health}\n{unassigned}\n{explained}")


def _allocate(client: OpenSearch, what: str | None) -> None:
    client.cluster.put_settings(body={"persistent": {"cluster.routing.allocation.enable": what}})


def _restart(cluster: LocalNodes, client: OpenSearch, node: int) -> None:
    """One node restarted the way OpenSearch's rolling-restart procedure says: from green, with
    replica allocation off and the shards flushed, so the node's copies come back as they were
    instead of being rebuilt elsewhere while it is away. Traffic goes on throughout."""
    _health(client, "green", 3)
    _allocate(client, "primaries")
    try:
        client.indices.flush(expand_wildcards="all")
        cluster.run("stop", "--node", str(node))
        _health(client, "yellow", 2)
        cluster.run("start", "--node", str(node))
        _health(client, "yellow", 3)
    finally:
        _allocate(client, None)
    _health(client, "green", 3)


@pytest.fixture
def sharded(
    cluster: LocalNodes, settings: LtrrSettings, encoder: Encoder, tmp_path: Path
) -> Iterator[LtrrSettings]:
    """A small catalog on the cluster, three primaries and one replica of each."""
    own = settings.model_copy(
        update={
            "opensearch_url": cluster.urls,
            "index_prefix": f"{settings.index_prefix}rolling-",
            "index_shards": 3,
            "index_replicas": 1,
            "spool_dir": tmp_path / "spool",
            "reward_window_s": 2.0,
        }
    )
    admin = connect(own)
    load_music(admin, own, encoder, {"Queen", "Taylor Swift"})
    _health(admin, "green", 3)
    yield own
    admin.indices.delete(index=f"{own.index_prefix}*", expand_wildcards="all")


@pytest.mark.parametrize(
    "restarted",
    [
        pytest.param((1,), id="first-node"),
        pytest.param((1, 2, 3), id="every-node", marks=pytest.mark.slow),
    ],
)
def test_a_rolling_restart_under_traffic_fails_no_search_and_loses_nothing(
    restarted: tuple[int, ...],
    cluster: LocalNodes,
    sharded: LtrrSettings,
    tmp_path: Path,
    processes: Processes,
) -> None:
    admin = connect(sharded)
    environment = {
        **os.environ,
        "LTRR_OPENSEARCH_URL": sharded.opensearch_url,
        "LTRR_INDEX_PREFIX": sharded.index_prefix,
        "LTRR_SPOOL_DIR": str(sharded.spool_dir),
        "LTRR_REWARD_WINDOW_S": "2",
        "LTRR_SEARCH_TIMEOUT_MS": "5000",  # three JVMs and four processes on two cores
    }
    learner = processes.start(
        "learner",
        [sys.executable, "-m", "ltrr_os", "learn", "--lag", "1", "--poll", "0.2"],
        environment,
    )
    enough = tmp_path / "enough"
    serve = [sys.executable, "-m", "tests.integration._serve"]
    servers = [
        processes.start(f"server-{n}", [*serve, f"rolling-{n}", "10", str(enough)], environment)
        for n in range(SERVERS)
    ]
    try:
        wait_for(lambda: checkpoint(admin, sharded).batch >= 1, 120, "the learner's first batch")
        before = checkpoint(admin, sharded).batch
        started = time.monotonic()
        for node in restarted:
            _restart(cluster, admin, node)
        took = time.monotonic() - started
        during = checkpoint(admin, sharded).batch - before
        done = millis(datetime.now(UTC))
        wait_for(lambda: checkpoint(admin, sharded).events_ms > done, 60, "the learner past it")
    finally:
        enough.touch()
    for n, server in enumerate(servers):
        assert server.wait(120) == 0, processes.errors(f"server-{n}")
    assert learner.poll() is None, processes.errors("learner")
    time.sleep(sharded.reward_window_s + 2)  # every search settled in the log by now
    learner.send_signal(signal.SIGTERM)
    assert learner.wait(60) == 0, processes.errors("learner")
    served = lines("".join(processes.output(f"server-{n}") for n in range(SERVERS)))
    partial = [json.loads(line.partition(" ")[2]) for line in served["partial"]]
    log.info(
        "rolling restart of node(s) %s: %.0f s, %d searches (%d partial: %s), %d failed, "
        "%d learner batches during it",
        restarted,
        took,
        len(served["search"]),
        len(partial),
        partial,
        len(served["failed"]),
        during,
    )
    assert served["failed"] == []
    # A search whose shards were being fetched from a node as it left loses their hits: OpenSearch
    # tries a failed shard again on another copy in the query phase, not in the fetch phase (the
    # copy that ran the query fetches). Such a search comes back partial, never failed, and few do.
    assert all(SHARD_LOST.search(e) for errors in partial for e in errors.values()), partial
    assert len(partial) <= 0.05 * len(served["search"])
    assert during >= 1  # the learner kept learning while nodes restarted
    Learner(admin, sharded, config=LearnerConfig(lag_s=0)).run_once()
    queries, events = logged(sharded)
    assert sorted(queries) == sorted(served["search"])
    assert sorted(events) == sorted(set(served["event"]))
    assert set(queries.values()) | set(events.values()) == {1}
    assert_a_replay_learns_the_same(
        admin, sharded, [f"rolling-{n}-user-{u}" for n in range(SERVERS) for u in range(3)]
    )
