"""The spool without a node: durability, recovery from torn and corrupt lines, order, dead letters.

`MemoryOpenSearch` answers bulk `create` the way OpenSearch does (201, 409 for an existing _id,
scripted item errors); the unreachable path uses a real client pointed at a closed port.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch
from pydantic import ValidationError

from ltrr_os._errors import LtrrError
from ltrr_os.feedback import Spool, SpoolRecord, claim_spool, deliver_unclaimed

INDEX = "ubi_events"
CLOSED_PORT = "http://127.0.0.1:9"


class MemoryOpenSearch(OpenSearch):
    """Bulk `create` in memory; `failures[doc_id]` lists (status, error type) answers to give."""

    def __init__(self, failures: dict[str, list[tuple[int, str]]] | None = None) -> None:
        super().__init__(hosts=[CLOSED_PORT])
        self.stored: dict[str, dict[str, Any]] = {}
        self.sent: list[str] = []
        self.failures = failures or {}

    def bulk(
        self,
        *,
        body: Any,
        index: Any = None,
        params: Any = None,
        headers: Any = None,
        require_alias: bool = False,
        request_timeout: float | None = None,
    ) -> Any:
        assert require_alias, "ltrr-os indices are aliases: writes must require one"
        items: list[dict[str, Any]] = []
        for action, document in zip(body[::2], body[1::2], strict=True):
            meta = action["create"]
            doc_id = meta["_id"]
            self.sent.append(doc_id)
            result: dict[str, Any] = {"_index": meta["_index"], "_id": doc_id}
            if self.failures.get(doc_id):
                status, kind = self.failures[doc_id].pop(0)
                result |= {"status": status, "error": {"type": kind, "reason": f"{kind} here"}}
            elif doc_id in self.stored:
                result |= {"status": 409, "error": {"type": "version_conflict_engine_exception"}}
            else:
                self.stored[doc_id] = document
                result |= {"status": 201, "result": "created"}
            items.append({"create": result})
        return {"took": 1, "errors": any("error" in i["create"] for i in items), "items": items}


def records(prefix: str, count: int, start: int = 0) -> list[SpoolRecord]:
    return [
        SpoolRecord(index=INDEX, doc_id=f"{prefix}{i}", document={"n": i, "user": "u-1"})
        for i in range(start, start + count)
    ]


def ids(prefix: str, numbers: range | list[int]) -> list[str]:
    return [f"{prefix}{i}" for i in numbers]


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("segment-*.jsonl"))


def append_one_by_one(spool: Spool, batch: list[SpoolRecord]) -> None:
    for record in batch:
        spool.append([record])


def test_records_are_delivered_once_in_append_order_and_segments_deleted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=300)
    for start in range(0, 50, 5):
        spool.append(records("r", 5, start))
    assert spool.pending() == 50
    assert len(segments(tmp_path)) > 3
    opensearch = MemoryOpenSearch()

    report = spool.deliver(opensearch)

    assert (report.delivered, report.duplicates, report.pending, report.error) == (50, 0, 0, None)
    assert opensearch.sent == ids("r", range(50))
    assert opensearch.stored["r7"] == {"n": 7, "user": "u-1"}
    assert len(segments(tmp_path)) == 1  # the segment still being appended to
    assert spool.deliver(opensearch).delivered == 0
    spool.close()
    reopened = Spool(tmp_path)
    assert (reopened.pending(), segments(tmp_path)) == (0, [])
    reopened.close()


def test_a_reopened_spool_resumes_at_the_cursor(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=500)
    spool.append(records("r", 30))
    opensearch = MemoryOpenSearch()
    first = spool.deliver(opensearch, max_records=10)
    assert (first.delivered, first.pending) == (10, 20)
    spool.close()

    reopened = Spool(tmp_path)
    assert reopened.pending() == 20
    reopened.append(records("r", 5, 30))
    second = reopened.deliver(opensearch)

    assert (second.delivered, second.duplicates, second.pending) == (25, 0, 0)
    assert opensearch.sent == ids("r", range(35))
    reopened.close()


def cut_last_line_short(segment: Path) -> int:
    data = segment.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    segment.write_bytes(data[: last + 20])
    return last


def flip_a_byte_of_line_two(segment: Path) -> int:
    data = bytearray(segment.read_bytes())
    line_two = data.index(b"\n") + 1
    data[line_two + 30] ^= 0x01
    segment.write_bytes(bytes(data))
    return line_two


def replace_line_two_with_garbage(segment: Path) -> int:
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(lines[0] + b"not a spool line\n" + b"".join(lines[2:]))
    return len(lines[0])


def append_zeros(segment: Path) -> int:
    size = segment.stat().st_size
    with segment.open("ab") as file:
        file.write(b"\0" * 100)  # what a power loss can leave after the last fsync
    return size


@pytest.mark.parametrize(
    ("damage", "kind", "lost"),
    [
        (cut_last_line_short, "torn", "r3"),
        (flip_a_byte_of_line_two, "corrupt", "r1"),
        (replace_line_two_with_garbage, "corrupt", "r1"),
        (append_zeros, "torn", None),
    ],
)
def test_a_damaged_line_is_reported_with_file_and_offset_and_skipped(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: Callable[[Path], int],
    kind: str,
    lost: str | None,
) -> None:
    spool = Spool(tmp_path)
    spool.append(records("r", 4))
    spool.close()
    [segment] = segments(tmp_path)
    offset = damage(segment)

    with caplog.at_level(logging.WARNING, logger="ltrr_os.feedback"):
        reopened = Spool(tmp_path)
    reopened.append(records("r", 2, 4))
    opensearch = MemoryOpenSearch()
    report = reopened.deliver(opensearch)

    expected = [i for i in ids("r", range(6)) if i != lost]
    assert (report.delivered, report.pending, report.error) == (len(expected), 0, None)
    assert opensearch.sent == expected
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert f"{kind} record in {segment} at offset {offset}" in warning.getMessage()
    assert "u-1" not in warning.getMessage()  # never document contents
    reopened.close()
    assert Spool(tmp_path).pending() == 0  # the damaged segment was passed and deleted


def test_an_unreadable_state_file_means_sending_again_never_losing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path)
    spool.append(records("r", 5))
    opensearch = MemoryOpenSearch()
    assert spool.deliver(opensearch).delivered == 5
    spool.close()
    (tmp_path / "state.json").write_text("{not json")

    with caplog.at_level(logging.WARNING, logger="ltrr_os.feedback"):
        reopened = Spool(tmp_path)
    report = reopened.deliver(opensearch)

    assert "state.json is unreadable" in caplog.text
    assert (report.delivered, report.duplicates, report.pending) == (0, 5, 0)
    assert len(opensearch.stored) == 5
    reopened.close()


def test_unreachable_opensearch_leaves_everything_pending(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(records("r", 3))

    report = spool.deliver(OpenSearch(hosts=[CLOSED_PORT], max_retries=0))

    assert report.error is not None
    assert report.error.startswith("OpenSearch is unreachable")
    assert (report.delivered, report.pending, spool.pending()) == (0, 3, 3)
    opensearch = MemoryOpenSearch()
    assert spool.deliver(opensearch).delivered == 3
    assert opensearch.sent == ids("r", range(3))
    spool.close()


def test_a_409_counts_as_already_delivered(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(records("r", 4))
    opensearch = MemoryOpenSearch()
    opensearch.stored["r1"] = {"n": 1}

    report = spool.deliver(opensearch)

    assert (report.delivered, report.duplicates, report.pending) == (3, 1, 0)
    spool.close()


def test_item_errors_keep_a_record_pending_or_send_it_to_the_dead_letter_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path)
    spool.append(records("r", 5))
    opensearch = MemoryOpenSearch(
        {
            "r1": [(429, "es_rejected_execution_exception")],
            "r3": [(400, "mapper_parsing_exception")],
        }
    )

    with caplog.at_level(logging.WARNING, logger="ltrr_os.feedback"):
        first = spool.deliver(opensearch)
    second = spool.deliver(opensearch)

    assert (first.delivered, first.dead_lettered, first.pending) == (3, 1, 1)
    assert first.error == (
        "1 records kept pending after item errors: es_rejected_execution_exception (1)"
    )
    assert (second.delivered, second.duplicates, second.pending, second.error) == (1, 0, 0, None)
    assert opensearch.sent == ["r0", "r1", "r2", "r3", "r4", "r1"]  # r2, r4 not sent twice
    [letter] = [json.loads(line) for line in spool.dead_letter_path.read_text().splitlines()]
    assert letter["doc_id"] == "r3"
    assert letter["document"] == {"n": 3, "user": "u-1"}
    assert letter["reason"] == "mapper_parsing_exception: mapper_parsing_exception here"
    assert "ids: r3" in caplog.text
    assert "u-1" not in caplog.text
    spool.close()


def test_a_failed_disk_write_raises_and_leaves_no_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path)
    spool.append(records("r", 1))

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", no_space)
        with pytest.raises(
            LtrrError, match=f"could not write 1 records to the spool in {tmp_path}"
        ):
            spool.append(records("r", 1, 1))
    spool.append(records("r", 1, 2))
    opensearch = MemoryOpenSearch()

    assert spool.deliver(opensearch).delivered == 2
    assert opensearch.sent == ["r0", "r2"]
    spool.close()
    assert Spool(tmp_path).pending() == 0


def test_records_that_cannot_be_stored_are_refused_before_writing(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(LtrrError, match="record 'bad' cannot be stored as JSON"):
        spool.append(
            [*records("r", 1), SpoolRecord(index=INDEX, doc_id="bad", document={"x": object()})]
        )
    with pytest.raises(ValidationError, match="longer than 512 bytes"):
        SpoolRecord(index=INDEX, doc_id="é" * 300, document={})
    assert (spool.pending(), segments(tmp_path)) == (0, [])
    spool.close()


def test_one_directory_has_one_spool_at_a_time(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(LtrrError, match="already open"):
        Spool(tmp_path)
    spool.close()
    Spool(tmp_path).close()


def test_close_delivers_what_is_left_then_refuses_appends(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(records("r", 7000))
    opensearch = MemoryOpenSearch()

    report = spool.close(opensearch)

    assert report is not None
    assert (report.delivered, report.pending) == (7000, 0)  # two batches
    with pytest.raises(LtrrError, match="closed"):
        spool.append(records("r", 1, 7000))
    with pytest.raises(LtrrError, match="closed"):
        spool.deliver(opensearch)
    assert spool.close(opensearch) is None


def test_concurrent_appends_during_background_delivery_lose_and_repeat_nothing(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, fsync=False, segment_bytes=64 * 1024)
    opensearch = MemoryOpenSearch()
    spool.start_delivery(lambda: opensearch, interval_s=0.01)
    threads = [
        threading.Thread(target=append_one_by_one, args=(spool, records(f"t{t}-", 500)))
        for t in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    report = spool.close(opensearch)

    assert report is not None
    assert report.pending == 0
    assert len(opensearch.sent) == len(set(opensearch.sent)) == 4000
    for t in range(8):  # each thread's records arrive in the order it appended them
        assert [i for i in opensearch.sent if i.startswith(f"t{t}-")] == ids(f"t{t}-", range(500))


def test_background_delivery_backs_off_and_warns_once_while_unreachable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path)
    attempts: list[OpenSearch] = []

    def unreachable() -> OpenSearch:
        attempts.append(OpenSearch(hosts=[CLOSED_PORT], max_retries=0))
        return attempts[-1]

    with caplog.at_level(logging.WARNING, logger="ltrr_os.feedback"):
        spool.start_delivery(unreachable, interval_s=0.05)
        spool.append(records("r", 3))
        threading.Event().wait(0.6)
        assert spool.close() is None

    assert spool.pending() == 3
    assert len(attempts) == 1  # one client, reused
    [warning] = [r.getMessage() for r in caplog.records if r.name.startswith("ltrr_os")]
    assert "spool delivery failed, retrying with backoff" in warning
    assert "OpenSearch is unreachable" in warning


def test_processes_sharing_a_spool_dir_each_claim_their_own_slot(tmp_path: Path) -> None:
    first, second = claim_spool(tmp_path), claim_spool(tmp_path)
    first.append(records("a", 3))
    second.append(records("b", 2))
    assert (first.pending(), second.pending()) == (3, 2)
    first.close()
    again = claim_spool(tmp_path)  # the slot a stopped process left, with what it kept
    assert again.pending() == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["instance-000", "instance-001"]
    again.close()
    second.close()


def test_records_left_in_unclaimed_slots_are_delivered(tmp_path: Path) -> None:
    legacy = Spool(tmp_path)  # the single spool of earlier versions, in the directory itself
    legacy.append(records("old", 2))
    legacy.close()
    stopped = claim_spool(tmp_path)
    stopped.append(records("s", 3))
    stopped.close()
    running = claim_spool(tmp_path)  # takes instance-000 back: it delivers that one itself
    busy = claim_spool(tmp_path)
    busy.append(records("busy", 1))
    client = MemoryOpenSearch()
    assert deliver_unclaimed(tmp_path, client) == 2
    assert sorted(client.stored) == ["old0", "old1"]
    assert running.deliver(client).delivered == 3
    assert busy.pending() == 1  # held by a live process: never touched by another
    running.close()
    busy.close()
