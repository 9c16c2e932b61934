"""`ltrr bootstrap` upgrading by reindex while a client searches and sends feedback and the
learner learns, for a new mapped field (the catalog) and a new shard count (the catalog and both
UBI logs): no search fails or comes back partial, every count through the catalog's alias sees it
exactly once (the swap is atomic), and the writes refused while an old version was blocked reach
the new one: every acknowledged search and event is stored once, and the learner ends with the
memory a replay of the logs builds."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from ltrr_os import LTRRClient, LtrrSettings
from ltrr_os.config import CatalogSchema, KeywordField
from ltrr_os.embedding import Encoder
from ltrr_os.learning import Learner, LearnerConfig
from ltrr_os.opensearch import bootstrap
from ltrr_os.opensearch._bootstrap import UpgradeIndex

from .conftest import MUSIC, load_music
from .test_bootstrap import with_field
from .test_cluster import assert_a_replay_learns_the_same, checkpoint
from .test_faults import Stream, logged, wait_for

log = logging.getLogger(__name__)
WIDER = with_field(MUSIC, "label", KeywordField(type="keyword"))


@pytest.fixture
def live(
    settings: LtrrSettings, os_client: OpenSearch, encoder: Encoder, tmp_path: Path
) -> Iterator[LtrrSettings]:
    own = settings.model_copy(
        update={
            "index_prefix": f"{settings.index_prefix}live-upgrade-",
            "model_dir": tmp_path / "models",
            "spool_dir": tmp_path / "spool",
            "reward_window_s": 2.0,
        }
    )
    load_music(os_client, own, encoder, {"Queen", "Taylor Swift", "AC/DC"})
    yield own
    os_client.indices.delete(index=f"{own.index_prefix}*", expand_wildcards="all")


class AliasCounter(threading.Thread):
    """Counts the catalog through its alias without pause: an atomic swap never shows both
    versions or neither."""

    def __init__(self, client: OpenSearch, alias: str) -> None:
        super().__init__(daemon=True)
        self.client, self.alias = client, alias
        self.counts: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.counts.append(int(self.client.count(index=self.alias)["count"]))


@pytest.mark.parametrize(
    ("shards", "schema", "upgraded"),
    [
        pytest.param(1, WIDER, ["catalog"], id="a-new-field"),
        pytest.param(2, MUSIC, ["catalog", "ubi_queries", "ubi_events"], id="more-shards"),
    ],
)
def test_an_upgrade_under_traffic_fails_no_search_and_keeps_every_write(
    shards: int,
    schema: CatalogSchema,
    upgraded: list[str],
    live: LtrrSettings,
    os_client: OpenSearch,
    encoder: Encoder,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alias = live.index_name("catalog")
    os_client.indices.refresh(index=alias)
    entities = int(os_client.count(index=alias)["count"])
    stop_learning = threading.Event()
    learner = Learner(os_client, live, config=LearnerConfig(lag_s=0.5, poll_s=0.1))
    learning = threading.Thread(target=learner.run, args=(stop_learning,), daemon=True)
    copy = UpgradeIndex._reindex

    def refused(writer: str) -> list[str]:
        """What a writer logged about writes refused by a block (none are before the upgrade)."""
        messages = (r.getMessage() for r in caplog.records)
        return [m for m in messages if writer in m and ("blocked by" in m or "cluster_block" in m)]

    def held_copy(self: UpgradeIndex, client: OpenSearch, started: list[str]) -> None:
        """Each copy starts once its writer (the learner for the catalog, the spool for the UBI
        logs) had a write refused by a block and searches went on meanwhile: what the test is
        about happens however fast this machine copies."""
        writer = "memory updates" if self.alias == alias else "spool delivery"
        searched = len(stream.searches)
        wait_for(
            lambda: bool(refused(writer)) and len(stream.searches) >= searched + 5,
            60,
            f"a refused {writer} write and searches while {self.old} is blocked",
        )
        copy(self, client, started)

    monkeypatch.setattr(UpgradeIndex, "_reindex", held_copy)
    counter = AliasCounter(os_client, alias)
    with LTRRClient(live, encoder=encoder) as client:
        stream = Stream(client)
        stream.start()
        learning.start()
        try:
            wait_for(lambda: checkpoint(os_client, live).events_ms > 0, 60, "learning")
            counter.start()
            before = len(stream.searches)
            started = time.monotonic()
            done = bootstrap(os_client, live.model_copy(update={"index_shards": shards}), schema)
            took = time.monotonic() - started
            during = len(stream.searches) - before
            moved = checkpoint(os_client, live).batch
            wait_for(lambda: checkpoint(os_client, live).batch > moved, 60, "learning after it")
        finally:
            for stop, thread in [(counter.stop, counter), (stream.stop, stream)]:
                stop.set()
                thread.join(30)
            stop_learning.set()
            learning.join(60)
        wait_for(lambda: client.flush() == 0, 60, "the spool to drain")
    time.sleep(live.reward_window_s + 1)  # every search settled in the log by now
    log.info(
        "upgrade of %s under traffic: %.1f s, %d searches during it, %d partial, %d failed, "
        "%d counts through the alias, refused: %s",
        upgraded,
        took,
        during,
        len(stream.partial),
        len(stream.failures),
        len(counter.counts),
        [m[:60] for writer in ("memory updates", "spool delivery") for m in refused(writer)],
    )
    assert [line.split(":")[0] for line in done if line.startswith("upgrade")] == [
        f"upgrade {live.index_name(name)}" for name in upgraded
    ]
    for name in upgraded:
        found = os_client.indices.get_alias(name=live.index_name(name))
        assert list(found) == [f"{live.index_name(name)}_v2"]
    assert (stream.errors, stream.failures, stream.partial) == ([], [], [])
    assert during >= 5
    assert set(counter.counts) == {entities}
    queries, events = logged(live)
    assert sorted(queries) == sorted(stream.searches)
    assert sorted(events) == sorted(stream.events)
    Learner(os_client, live, config=LearnerConfig(lag_s=0)).run_once()
    assert_a_replay_learns_the_same(os_client, live, [])
