"""The spool against real nodes: exactly once, an outage of a node of our own, SIGKILLed writers,
and mapping errors ending in the dead-letter file.

Run as a module (`python -m tests.integration.test_spool_delivery ...`) it is the writer that the
crash test kills.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from ltrr_os.config import LtrrSettings
from ltrr_os.feedback import Spool, SpoolRecord
from ltrr_os.opensearch import connect

from ..conftest import REPO
from .conftest import LocalNodes, stored_versions

log = logging.getLogger(__name__)


def record(index: str, doc_id: str, n: int | str) -> SpoolRecord:
    return SpoolRecord(index=index, doc_id=doc_id, document={"n": n, "action": "click"})


def make_alias(client: OpenSearch, alias: str, body: dict[str, object] | None = None) -> str:
    """The spool writes with require_alias (as ltrr-os' own indices are all aliases)."""
    client.indices.create(
        index=f"{alias}_v1", body={**(body or {}), "aliases": {alias: {"is_write_index": True}}}
    )
    return alias


@pytest.fixture
def index(settings: LtrrSettings, request: pytest.FixtureRequest) -> str:
    return f"{settings.index_prefix}spool-{request.node.name.removeprefix('test_')[:40]}"


def test_delivery_is_exactly_once_even_when_progress_is_lost(
    os_client: OpenSearch, index: str, tmp_path: Path
) -> None:
    make_alias(os_client, index)
    spool = Spool(tmp_path / "spool")
    for start in range(0, 300, 100):
        spool.append([record(index, f"r{n}", n) for n in range(start, start + 100)])
    spool.close()
    shutil.copytree(tmp_path / "spool", tmp_path / "before")  # as if killed right after the bulk

    spool = Spool(tmp_path / "spool")
    first = spool.close(os_client)
    replay = Spool(tmp_path / "before")
    again = replay.close(os_client)

    assert first is not None
    assert again is not None
    assert (first.delivered, first.duplicates, first.pending) == (300, 0, 0)
    assert (again.delivered, again.duplicates, again.pending) == (0, 300, 0)
    versions = stored_versions(os_client, index)
    assert sorted(versions) == sorted(f"r{n}" for n in range(300))
    assert set(versions.values()) == {1}


def test_threads_append_while_the_background_thread_delivers(
    os_client: OpenSearch, settings: LtrrSettings, index: str, tmp_path: Path
) -> None:
    make_alias(os_client, index)
    spool = Spool(tmp_path)
    spool.start_delivery(lambda: connect(settings), interval_s=0.05)

    def writer(thread: int) -> None:
        for n in range(500):
            spool.append([record(index, f"t{thread}-{n}", n)])

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report = spool.close(os_client)

    assert report is not None
    assert (report.pending, report.error) == (0, None)
    versions = stored_versions(os_client, index)
    assert len(versions) == 4000
    assert set(versions.values()) == {1}


def test_a_permanent_mapping_error_goes_to_the_dead_letter_file(
    os_client: OpenSearch, index: str, tmp_path: Path
) -> None:
    make_alias(
        os_client,
        index,
        {
            "mappings": {
                "dynamic": "strict",
                "properties": {"n": {"type": "long"}, "action": {"type": "keyword"}},
            }
        },
    )
    spool = Spool(tmp_path)
    extra_field = SpoolRecord(index=index, doc_id="r2", document={"n": 2, "colour": "red"})
    spool.append([record(index, "r0", 0), record(index, "r1", "many"), extra_field])
    spool.append([record(index, "r3", 3)])

    report = spool.deliver(os_client)

    assert (report.delivered, report.dead_lettered, report.pending) == (2, 2, 0)
    letters = [json.loads(line) for line in spool.dead_letter_path.read_text().splitlines()]
    assert [(letter["doc_id"], letter["status"]) for letter in letters] == [
        ("r1", 400),
        ("r2", 400),
    ]
    assert letters[0]["reason"].startswith("mapper_parsing_exception: failed to parse field [n]")
    assert letters[0]["document"] == {"n": "many", "action": "click"}
    assert letters[1]["reason"].startswith("strict_dynamic_mapping_exception")
    assert sorted(stored_versions(os_client, index)) == ["r0", "r3"]
    spool.close()


@pytest.fixture
def second_node(
    settings: LtrrSettings, own_node: LocalNodes
) -> Iterator[tuple[LocalNodes, OpenSearch]]:
    """A node of our own that the test may stop and start."""
    client = OpenSearch(hosts=[own_node.url()], max_retries=0, timeout=30)
    yield own_node, client
    own_node.run("start")
    client.indices.delete(index=f"{settings.index_prefix}*", expand_wildcards="all")
    client.close()


def test_records_wait_out_an_outage_and_arrive_once(
    second_node: tuple[LocalNodes, OpenSearch], index: str, tmp_path: Path
) -> None:
    node, client = second_node
    make_alias(client, index)
    spool = Spool(tmp_path)
    spool.append([record(index, f"a{n}", n) for n in range(100)])
    assert spool.deliver(client).delivered == 100

    node.run("stop")
    for n in range(100):
        spool.append([record(index, f"b{n}", n)])
    down = spool.deliver(client)
    assert down.error is not None
    assert down.error.startswith("OpenSearch is unreachable")
    assert (down.delivered, down.pending, spool.pending()) == (0, 100, 100)

    node.run("start")
    report = spool.close(client)

    assert report is not None
    assert (report.delivered, report.duplicates, report.pending) == (100, 0, 0)
    versions = stored_versions(client, index)
    assert len(versions) == 200
    assert set(versions.values()) == {1}


def test_records_acknowledged_before_a_sigkill_arrive_exactly_once(
    os_client: OpenSearch, settings: LtrrSettings, index: str, tmp_path: Path
) -> None:
    make_alias(os_client, index)
    rng = random.Random(1729)
    acknowledged: set[str] = set()
    in_flight: set[str] = set()  # written maybe, acknowledged never: may arrive, at most once
    first = 0
    for _ in range(3):
        writer = [sys.executable, "-m", __name__, str(tmp_path), settings.opensearch_url, index]
        child = subprocess.Popen(
            [*writer, str(first)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        for _ in range(rng.randrange(100, 400)):
            acknowledged.add(child.stdout.readline().strip())
        threading.Event().wait(rng.uniform(0.0, 0.2))
        os.kill(child.pid, signal.SIGKILL)
        acknowledged.update(line.strip() for line in child.stdout)
        child.stdout.close()
        assert child.wait() == -signal.SIGKILL
        last = max(int(doc_id[1:]) for doc_id in acknowledged)
        in_flight.add(f"k{last + 1}")
        first = last + 2

    spool = Spool(tmp_path)
    report = spool.close(os_client)
    versions = stored_versions(os_client, index)

    assert report is not None
    log.info(
        "crash test: %d appends acknowledged, %d documents found (%d of %d in flight among them); "
        "after the kills %d were delivered and %d re-sent ones answered 409",
        len(acknowledged),
        len(versions),
        len(set(versions) & in_flight),
        len(in_flight),
        report.delivered,
        report.duplicates,
    )
    assert report.pending == 0
    assert acknowledged <= set(versions) <= acknowledged | in_flight
    assert set(versions.values()) == {1}


def _append_until_killed(directory: str, url: str, index: str, first: str) -> None:
    """The writer of the crash test: appends one record at a time while delivering in the
    background, and prints each acknowledged id."""
    spool = Spool(Path(directory))
    spool.start_delivery(lambda: OpenSearch(hosts=[url]), interval_s=0.02)
    n = int(first)
    while True:
        spool.append([record(index, f"k{n}", n)])
        sys.stdout.write(f"k{n}\n")
        sys.stdout.flush()
        n += 1


if __name__ == "__main__":
    _append_until_killed(*sys.argv[1:])
