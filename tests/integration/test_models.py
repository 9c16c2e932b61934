"""Model versions in OpenSearch: the live pointer, promotion, rollback, pruning, and what serves
when a version is damaged."""

from __future__ import annotations

import base64
import errno
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch
from typer.testing import CliRunner

from ltrr_os import LTRRClient
from ltrr_os.cli import app
from ltrr_os.config import LtrrSettings
from ltrr_os.embedding import Encoder
from ltrr_os.models import ModelStore
from ltrr_os.policy import (
    PlanBandit,
    RulePolicy,
    SyntheticEnvironment,
    new_default_policy,
    simulate,
)

from .conftest import load_music


@pytest.fixture(scope="module")
def own(settings: LtrrSettings, os_client: OpenSearch, encoder: Encoder) -> Iterator[LtrrSettings]:
    own = settings.model_copy(
        update={"index_prefix": f"{settings.index_prefix}models-{secrets.token_hex(2)}-"}
    )
    load_music(os_client, own, encoder, {"Queen"})
    yield own
    os_client.indices.delete(index=f"{own.index_prefix}*", expand_wildcards="all")


def _policy(rounds: int) -> PlanBandit:
    policy = new_default_policy()
    simulate(policy, SyntheticEnvironment(seed=rounds), rounds)
    return policy


def _damage(client: OpenSearch, settings: LtrrSettings, version: int) -> None:
    """Truncate a stored version's bytes (its checksum no longer matches)."""
    index = settings.index_name("models")
    doc_id = f"policy-bandit-v{version}"
    blob = base64.b64decode(client.get(index=index, id=doc_id)["_source"]["blob"])
    damaged = base64.b64encode(blob[: len(blob) // 2]).decode()
    client.update(index=index, id=doc_id, body={"doc": {"blob": damaged}}, refresh=True)


def test_versions_promote_roll_back_and_prune_around_the_live_one(
    own: LtrrSettings, os_client: OpenSearch
) -> None:
    store = ModelStore(os_client, own)
    first = store.publish("policy", "bandit", _policy(50).to_bytes(), status="promoted")
    second = store.publish("policy", "bandit", _policy(60).to_bytes(), status="promoted")
    candidate = store.publish("policy", "bandit", _policy(70).to_bytes(), reason="replayed")
    pointer = store.pointer("policy", "bandit")
    assert pointer is not None
    assert (pointer.version, pointer.previous) == (second.version, [first.version])
    assert candidate.status == "candidate"
    store.promote("policy", "bandit", candidate.version, "operator")
    assert store.rollback("policy", "bandit").version == second.version
    assert store.rollback("policy", "bandit").version == first.version
    for _ in range(5):
        store.publish("policy", "bandit", _policy(10).to_bytes())
    store.promote("policy", "bandit", second.version, "operator")  # live: second, then first
    pointer = store.pointer("policy", "bandit")
    assert pointer is not None
    pruned = store.prune("policy", "bandit", keep=2)
    left = {v.version for v in store.versions("policy", "bandit")}
    assert pruned == 8 - len(left)
    assert pointer.version in left  # never the live one
    assert pointer.previous[0] in left  # nor the one before it
    with pytest.raises(Exception, match="no version 9999"):
        store.load("policy", "bandit", 9999)


def test_a_damaged_live_version_is_reported_and_the_one_before_it_serves(
    own: LtrrSettings, os_client: OpenSearch, encoder: Encoder, caplog: pytest.LogCaptureFixture
) -> None:
    store = ModelStore(os_client, own)
    good = store.publish("policy", "bandit", _policy(80).to_bytes(), status="promoted")
    bad = store.publish("policy", "bandit", _policy(90).to_bytes(), status="promoted")
    _damage(os_client, own, bad.version)
    with caplog.at_level(logging.ERROR), LTRRClient(own, encoder=encoder) as client:
        assert isinstance(client.policy, PlanBandit)
        assert client.policy.version == good.version
        assert client.search("queen", limit=3).decision.policy_version.startswith(
            f"v{good.version}+"
        )
    assert any(f"v{bad.version} cannot serve" in r.message for r in caplog.records)
    _damage(os_client, own, good.version)
    pointer = store.pointer("policy", "bandit")
    assert pointer is not None
    for version in pointer.previous:
        _damage(os_client, own, version)
    with LTRRClient(own, encoder=encoder) as client:  # no version loads: the rule policy
        assert isinstance(client.policy, RulePolicy)
        assert client.search("queen", limit=3).decision.policy == "rules"


def test_export_on_a_full_disk_is_one_line_and_leaves_no_half_file(
    own: LtrrSettings,
    os_client: OpenSearch,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ModelStore(os_client, own).publish(
        "policy", "bandit", _policy(20).to_bytes(), status="promoted"
    )
    write_bytes = Path.write_bytes

    def full_disk(path: Path, data: Any) -> int:
        write_bytes(path, bytes(data)[:10])  # a part reaches the disk, then it is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    env = {"LTRR_OPENSEARCH_URL": own.opensearch_url, "LTRR_INDEX_PREFIX": own.index_prefix}
    result = CliRunner().invoke(app, ["models", "export", "--out", str(tmp_path)], env=env)
    assert result.exit_code == 2
    assert "No space left on device" in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []
