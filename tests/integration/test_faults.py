"""Faults injected into a running client: its node crashes and comes back, freezes, a strategy
breaks, the client process dies in the middle of saving its model. Counted afterwards: no
decision or event lost, none stored twice, and no lesson learned from a failure.

Run as a module (`python -m tests.integration.test_faults POINT`) it is the process that the
model-save test kills at POINT.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ltrr_os import (
    FeedbackEvent,
    LTRRClient,
    LtrrSettings,
    OpenSearchUnavailableError,
    SearchResponse,
)
from ltrr_os.embedding import Encoder
from ltrr_os.opensearch import connect
from ltrr_os.policy import PlanBandit, PlanBanditConfig
from ltrr_os.strategies import get_strategy

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
        self.partial: list[dict[str, str]] = []  # what failed in each partial response
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
                    if backlog[-1].partial:
                        self.partial.append(backlog[-1].errors)
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


def test_feedback_while_the_node_is_frozen_is_taken_at_once_and_logged_when_it_thaws(
    client_settings: LtrrSettings, own_node: LocalNodes, encoder: Encoder
) -> None:
    """Feedback never waits for OpenSearch: the events go to the spool (whatever process served
    their search) and reach the log once the node answers again."""
    other = client_settings.model_copy(update={"spool_dir": client_settings.spool_dir / "other"})
    with LTRRClient(other, encoder=encoder) as elsewhere:
        foreign = elsewhere.search("queen", limit=3)
        assert elsewhere.flush() == 0
    with LTRRClient(client_settings, encoder=encoder) as client:
        batch = [click(client.search("shake it off", limit=3)), click(foreign)]
        pid = own_node.pid()
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            receipt = client.feedback(batch)
            took = time.monotonic() - started
        finally:
            os.kill(pid, signal.SIGCONT)
        assert (receipt.accepted, receipt.duplicates, receipt.rejected) == (2, 0, [])
        assert took < 0.5
        wait_for(lambda: client.flush() == 0, 60, "the spool to drain")
    _, events = logged(client_settings)
    assert set(events) == {event.key for event in batch}


def test_a_frozen_node_stalls_neither_feedback_nor_close_and_nothing_is_lost(
    client_settings: LtrrSettings, own_node: LocalNodes, encoder: Encoder
) -> None:
    """With the node frozen, feedback returns at once and close within `request_timeout_s`;
    what could not be delivered stays in the spool and reaches the log from the next process."""
    client = LTRRClient(client_settings, encoder=encoder)
    response = client.search("queen", limit=3)
    pid = own_node.pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert client.feedback([click(response)]).accepted == 1
        feedback_s = time.monotonic() - started
        started = time.monotonic()
        client.close()
        close_s = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    assert feedback_s < 0.5
    assert close_s < client_settings.request_timeout_s + 1.0
    with LTRRClient(client_settings, encoder=encoder) as later:  # takes the slot, delivers
        wait_for(lambda: later.flush() == 0, 60, "the spool to drain")
    queries, events = logged(client_settings)
    assert response.search_id in queries
    assert click(response).key in events


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
    with LTRRClient(client_settings, encoder=encoder, policy=policy, learn="embedded") as client:
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
        report = client.settle(force=True)
        assert (report.settled, report.policy_lessons) == (1, 0)

        healthy = client.search("queen", limit=10)
        assert not healthy.partial
        client.feedback([click(healthy)])
        report = client.settle(force=True)
        assert (report.settled, report.policy_lessons) == (1, 1)
        assert client.flush() == 0
    candidates = admin.get(index=client_settings.index_name("ubi_queries"), id=broken.search_id)[
        "_source"
    ]["ltrr"]["candidates"]
    assert (candidates["vector"]["failed"], candidates["lexical"]["failed"]) == (True, False)
