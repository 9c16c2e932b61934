"""Faults injected into a running client: its node crashes and comes back, freezes, a strategy
breaks, the client process dies in the middle of saving its model. Counted afterwards: no
decision or event lost, none stored twice, and no lesson learned from a failure.

Run as a module (`python -m tests.integration.test_faults POINT`) it is the process that the
model-save test kills at POINT.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ltrr_os import (
    FeedbackEvent,
    LTRRClient,
    LtrrSettings,
    OpenSearchUnavailableError,
    SearchResponse,
    load_settings,
)
from ltrr_os.embedding import Encoder
from ltrr_os.opensearch import connect
from ltrr_os.policy import PlanBandit, PlanBanditConfig, VWBandit, load_policy, new_default_policy
from ltrr_os.strategies import get_strategy

from ..conftest import REPO
from .conftest import LocalNodes, load_music, stored_versions

QUERIES = ["queen", "shake it off", "ac/dc thunder", "80s rock", "bohemian rhapsody", "love"]
log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def faults_settings(
    settings: LtrrSettings, own_node: LocalNodes, encoder: Encoder
) -> Iterator[LtrrSettings]:
    """A small catalog on the node the tests may crash, with short deadlines."""
    own = settings.model_copy(
        update={
            "opensearch_url": own_node.url(),
            "index_prefix": f"{settings.index_prefix}faults-",
            "search_timeout_ms": 500,
            "request_timeout_s": 2.0,
            "max_retries": 1,
            "reward_window_s": 3600.0,
        }
    )
    admin = connect(own)
    load_music(admin, own, encoder, {"Queen", "Taylor Swift", "AC/DC"})
    yield own
    own_node.run("start")
    connect(own).indices.delete(index=f"{own.index_prefix}*", expand_wildcards="all")


@pytest.fixture
def client_settings(faults_settings: LtrrSettings, tmp_path: Path) -> LtrrSettings:
    """The module's catalog with its own model and spool directories, and empty UBI logs."""
    admin = connect(faults_settings)
    for kind in ("ubi_queries", "ubi_events"):
        admin.indices.refresh(index=faults_settings.index_name(kind))  # else recent ones stay
        admin.delete_by_query(
            index=faults_settings.index_name(kind),
            body={"query": {"match_all": {}}},
            refresh=True,
            conflicts="proceed",
        )
    return faults_settings.model_copy(
        update={"model_dir": tmp_path / "models", "spool_dir": tmp_path / "spool"}
    )


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def click(response: SearchResponse) -> FeedbackEvent:
    """A click on the first result, with an explicit id: its UBI document is stored under it."""
    return FeedbackEvent(
        search_id=response.search_id,
        action="click",
        object_id=response.results[0].id,
        position=1,
        event_id=f"{response.search_id}-click",
    )


def logged(settings: LtrrSettings) -> tuple[dict[str, int], dict[str, int]]:
    """_id -> _version of every stored UBI query and event."""
    admin = connect(settings)
    return (
        stored_versions(admin, settings.index_name("ubi_queries")),
        stored_versions(admin, settings.index_name("ubi_events")),
    )


class Stream(threading.Thread):
    """Searches without pause and sends each search's feedback (twice: the repeat must be
    ignored) a few searches later, or right after a search failed, so that feedback for searches
    made before an outage arrives during it. Records what the client acknowledged."""

    def __init__(self, client: LTRRClient, lag: int = 5) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.lag = lag
        self.searches: list[str] = []
        self.events: list[str] = []
        self.failures: list[float] = []  # seconds each failed search took
        self.errors: list[BaseException] = []
        self.events_while_down = 0  # sent right after a search found OpenSearch unreachable
        self.stop = threading.Event()

    def run(self) -> None:
        backlog: deque[SearchResponse] = deque()
        try:
            for n in itertools.count():
                if self.stop.is_set():
                    return
                started = time.monotonic()
                try:
                    backlog.append(self.client.search(QUERIES[n % len(QUERIES)], limit=5))
                    self.searches.append(backlog[-1].search_id)
                    failed = False
                except OpenSearchUnavailableError:
                    self.failures.append(time.monotonic() - started)
                    failed = True
                if backlog and (failed or len(backlog) > self.lag):
                    self.events_while_down += self.send_feedback(backlog.popleft()) * failed
                self.stop.wait(0.02)
        except BaseException as exc:
            self.errors.append(exc)

    def send_feedback(self, response: SearchResponse) -> int:
        if not response.results:
            return 0
        events = [
            FeedbackEvent(
                search_id=response.search_id,
                action="impression",
                object_id=response.results[0].id,
                position=1,
                event_id=f"{response.search_id}-impression",
            ),
            click(response),
        ]
        receipt = self.client.feedback(events)
        assert (receipt.accepted, receipt.rejected) == (2, []), receipt
        assert self.client.feedback(events).duplicates == 2
        self.events += [event.key for event in events]
        return receipt.accepted


def test_a_crashed_node_fails_searches_fast_and_no_decision_or_event_is_lost_or_repeated(
    client_settings: LtrrSettings, own_node: LocalNodes, encoder: Encoder
) -> None:
    with LTRRClient(client_settings, encoder=encoder) as client:
        stream = Stream(client)
        stream.start()
        try:
            wait_for(lambda: len(stream.searches) >= 10, 60, "searches before the crash")
            own_node.run("stop", "--kill")
            wait_for(
                lambda: len(stream.failures) >= 5 and stream.events_while_down >= 6,
                30,
                "failed searches and feedback during the outage",
            )
            own_node.run("start")
            before = len(stream.searches)
            wait_for(lambda: len(stream.searches) >= before + 10, 60, "searches after it")
        finally:
            stream.stop.set()
            stream.join(30)
            own_node.run("start")
        assert stream.errors == []
        wait_for(lambda: client.flush() == 0, 60, "the spool to drain")
    queries, events = logged(client_settings)
    log.info(
        "outage: %d searches acknowledged, %d failed (slowest %.3f s), %d events acknowledged "
        "(%d during the outage)",
        len(stream.searches),
        len(stream.failures),
        max(stream.failures),
        len(stream.events),
        stream.events_while_down,
    )
    assert max(stream.failures) < client_settings.search_timeout_ms / 1000 + 1.0
    assert sorted(queries) == sorted(stream.searches)
    assert sorted(events) == sorted(stream.events)
    assert set(queries.values()) | set(events.values()) == {1}


def test_a_frozen_node_fails_searches_at_their_deadline(
    client_settings: LtrrSettings, own_node: LocalNodes, encoder: Encoder
) -> None:
    """A node that accepts connections but never answers: no retry stretches the deadline."""
    deadline = client_settings.search_timeout_ms / 1000 + 1.0
    elapsed = []
    with LTRRClient(client_settings, encoder=encoder) as client:
        assert client.search("queen", limit=3).results
        pid = own_node.pid()
        os.kill(pid, signal.SIGSTOP)
        try:
            for _ in range(2):
                started = time.monotonic()
                with pytest.raises(OpenSearchUnavailableError, match="did not answer"):
                    client.search("queen", limit=3)
                elapsed.append(time.monotonic() - started)
        finally:
            os.kill(pid, signal.SIGCONT)
    assert all(deadline <= seconds < deadline + 0.5 for seconds in elapsed), elapsed


def test_feedback_refused_while_the_node_is_frozen_is_all_accepted_when_sent_again(
    client_settings: LtrrSettings, own_node: LocalNodes, encoder: Encoder
) -> None:
    """The second event's search is another process's, so it is looked up in OpenSearch, and
    that fails: the batch is refused whole, and the first event must not count as a repeat."""
    other = client_settings.model_copy(update={"spool_dir": client_settings.spool_dir / "other"})
    with LTRRClient(other, encoder=encoder) as elsewhere:
        foreign = elsewhere.search("queen", limit=3)
        assert elsewhere.flush() == 0
    with LTRRClient(client_settings, encoder=encoder) as client:
        batch = [click(client.search("shake it off", limit=3)), click(foreign)]
        pid = own_node.pid()
        os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(OpenSearchUnavailableError, match="did not answer in time"):
                client.feedback(batch)
        finally:
            os.kill(pid, signal.SIGCONT)
        receipt = client.feedback(batch)
    assert (receipt.accepted, receipt.duplicates, receipt.rejected) == (2, 0, [])


BROKEN_TEMPLATES = {
    "missing": None,
    "bad field": '{"query": {"term": {"embedding": "x"}}}',
    "not JSON": "{ not json",
}


@pytest.mark.parametrize("breakage", BROKEN_TEMPLATES)
def test_a_failing_strategy_leaves_the_others_results_and_teaches_the_bandit_nothing(
    breakage: str, client_settings: LtrrSettings, encoder: Encoder
) -> None:
    admin = connect(client_settings)
    template_id = get_strategy("vector").template_id(client_settings)
    stored = admin.get_script(id=template_id)["script"]["source"]
    policy = PlanBandit(PlanBanditConfig(name="faults", plans=[{"lexical": 20, "vector": 20}]))
    with LTRRClient(client_settings, encoder=encoder, policy=policy) as client:
        if BROKEN_TEMPLATES[breakage] is None:
            admin.delete_script(id=template_id)
        else:
            admin.put_script(
                id=template_id,
                body={"script": {"lang": "mustache", "source": BROKEN_TEMPLATES[breakage]}},
            )
        try:
            broken = client.search("queen", limit=10)
        finally:
            admin.put_script(
                id=template_id, body={"script": {"lang": "mustache", "source": stored}}
            )
        assert broken.partial
        assert set(broken.errors) == {"vector"}
        assert broken.results
        assert {p.strategy for r in broken.results for p in r.provenance} == {"lexical"}
        client.feedback([click(broken)])
        assert client.settle(force=True) == 1
        assert (policy.updates, policy.history.records) == (0, {})

        healthy = client.search("queen", limit=10)
        assert not healthy.partial
        client.feedback([click(healthy)])
        assert client.settle(force=True) == 1
        assert policy.updates == 1
        assert client.flush() == 0
    candidates = admin.get(index=client_settings.index_name("ubi_queries"), id=broken.search_id)[
        "_source"
    ]["ltrr"]["candidates"]
    assert (candidates["vector"]["failed"], candidates["lexical"]["failed"]) == (True, False)


# -- a process killed while it saves its model --------------------------------------------------

_VW = importlib.import_module("ltrr_os.policy._vw")
CRASH_POINTS: dict[str, tuple[Any, str, int]] = {
    # where: (owner, function, the call of it during the save that never returns)
    "version number claimed": (tempfile, "mkstemp", 1),
    "model written, not synced": (_VW, "_fsync", 1),
    "model in place, no manifest": (_VW, "replace_atomically", 1),
    "manifest written, not renamed": (os, "replace", 2),
}


def version_digests(model_dir: Path, version: int) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(model_dir.glob(f"policy-*-v{version}.*"))
    }


@pytest.mark.parametrize("crash_point", CRASH_POINTS)
def test_a_process_killed_while_saving_its_model_restarts_from_the_previous_one(
    crash_point: str, client_settings: LtrrSettings, encoder: Encoder
) -> None:
    environment = {
        **os.environ,
        "LTRR_OPENSEARCH_URL": client_settings.opensearch_url,
        "LTRR_INDEX_PREFIX": client_settings.index_prefix,
        "LTRR_MODEL_DIR": str(client_settings.model_dir),
        "LTRR_SPOOL_DIR": str(client_settings.spool_dir),
    }
    child = subprocess.run(
        [sys.executable, "-m", __name__, crash_point],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    acknowledged: dict[str, list[str]] = {"search": [], "event": [], "saved": []}
    for line in child.stdout.splitlines():
        kind, _, value = line.partition(" ")
        acknowledged[kind].append(value)
    [saved] = acknowledged["saved"]

    with LTRRClient(client_settings, encoder=encoder) as restarted:
        assert isinstance(restarted.policy, VWBandit)
        assert restarted.policy.version == 1
        assert version_digests(client_settings.model_dir, 1) == json.loads(saved)
        assert restarted.flush() == 0
        response = restarted.search("queen", limit=3)
        restarted.feedback([click(response)])
        restarted.settle(force=True)
    newest = load_policy(client_settings.model_dir)
    assert newest is not None
    assert newest.version > 1  # a save after the crash works and is the one loaded next
    queries, events = logged(client_settings)
    assert sorted(queries) == sorted([*acknowledged["search"], response.search_id])
    assert sorted(events) == sorted([*acknowledged["event"], f"{response.search_id}-click"])


def _learn_save_and_die(crash_point: str) -> None:
    """The process of the test above: learns and saves v1, learns more, and dies at the crash
    point of the next save. Prints each acknowledged search and event, and v1's digests."""
    with LTRRClient(load_settings()) as client:
        for round_ in (1, 2):
            for query in QUERIES[:2]:
                response = client.search(query, limit=3)
                print("search", response.search_id, flush=True)
                event = click(response)
                assert client.feedback([event]).accepted == 1
                print("event", event.key, flush=True)
            client.settle(force=True)
            if round_ == 2:
                _die_at(crash_point)
            client.save()
            print("saved", json.dumps(version_digests(client.settings.model_dir, 1)), flush=True)


def _die_at(crash_point: str) -> None:
    """SIGKILL this process at that call (counting this thread's calls: the spool's thread
    replaces files too)."""
    owner, name, fatal_call = CRASH_POINTS[crash_point]
    original = getattr(owner, name)
    saver = threading.current_thread()
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += threading.current_thread() is saver
        if calls == fatal_call:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


@pytest.mark.parametrize("damage", ["truncated model", "garbled manifest"])
def test_a_damaged_newest_model_is_reported_and_the_version_before_it_loads(
    damage: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    policy = new_default_policy()
    policy.save(tmp_path)
    newest = policy.save(tmp_path)
    if damage == "truncated model":
        model = newest.with_suffix(".vw")
        model.write_bytes(model.read_bytes()[:100])
    else:
        newest.write_text(newest.read_text()[:-10])
    with caplog.at_level(logging.WARNING, logger="ltrr_os.policy"):
        loaded = load_policy(tmp_path)
    assert loaded is not None
    assert loaded.version == 1
    assert f"v2 in {tmp_path} is unusable" in caplog.text


if __name__ == "__main__":
    _learn_save_and_die(sys.argv[1])
