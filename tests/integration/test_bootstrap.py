"""Bootstrap on a real node: idempotent, upgrades by reindex without losing data, rolls back."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator

import pytest
from opensearchpy import OpenSearch

from ltrr_os import LtrrError
from ltrr_os.config import CatalogSchema, KeywordField, LtrrSettings, NumberField, load_schema
from ltrr_os.opensearch import bootstrap, plan_bootstrap
from ltrr_os.opensearch._templates import logical_indices
from ltrr_os.strategies import strategies

pytestmark = pytest.mark.smoke

MUSIC = load_schema("music")
CHANGED = ("catalog", "ubi_queries", "ubi_events")
"""The indices that take `index_shards`."""


@pytest.fixture
def fresh(settings: LtrrSettings, os_client: OpenSearch) -> Iterator[LtrrSettings]:
    """Settings with a prefix of their own, cleaned up afterwards."""
    own = settings.model_copy(
        update={"index_prefix": f"{settings.index_prefix}{secrets.token_hex(2)}-"}
    )
    yield own
    os_client.indices.delete(index=f"{own.index_prefix}*", expand_wildcards="all")
    templates = os_client.indices.get_index_template(name=f"{own.index_prefix}*", ignore=404)
    for template in templates.get("index_templates", []):
        os_client.indices.delete_index_template(name=template["name"])
    components = os_client.cluster.get_component_template(name=f"{own.index_prefix}*", ignore=404)
    for component in components.get("component_templates", []):
        os_client.cluster.delete_component_template(name=component["name"])


def aliases(client: OpenSearch, settings: LtrrSettings) -> dict[str, list[str]]:
    found = client.indices.get_alias(index=f"{settings.index_prefix}*")
    return {index: sorted(body["aliases"]) for index, body in sorted(found.items())}


def with_field(schema: CatalogSchema, name: str, spec: KeywordField | NumberField) -> CatalogSchema:
    return schema.model_copy(update={"fields": {**schema.fields, name: spec}})


def test_first_run_creates_everything_then_nothing_is_left_to_do(
    os_client: OpenSearch, fresh: LtrrSettings
) -> None:
    planned = [step.describe() for step in plan_bootstrap(os_client, fresh, MUSIC)]
    assert os_client.cat.indices(index=f"{fresh.index_prefix}*", format="json") == []
    done = bootstrap(os_client, fresh, MUSIC)
    assert done == planned
    assert sum("store search template" in line for line in done) == len(strategies())
    p = fresh.index_prefix
    assert aliases(os_client, fresh) == {
        f"{p}catalog_v1": [f"{p}catalog"],
        f"{p}ubi_events_v1": [f"{p}ubi_events"],  # no shared alias unless asked
        f"{p}ubi_queries_v1": [f"{p}ubi_queries"],
        f"{p}state_v1": [f"{p}state"],
        f"{p}models_v1": [f"{p}models"],
        f"{p}profiles_v1": [f"{p}profiles"],
    }
    assert bootstrap(os_client, fresh, MUSIC) == []
    assert plan_bootstrap(os_client, fresh, MUSIC) == []


def test_catalog_mapping_follows_the_schema(os_client: OpenSearch, fresh: LtrrSettings) -> None:
    bootstrap(os_client, fresh, MUSIC)
    index = f"{fresh.index_prefix}catalog_v1"
    properties = os_client.indices.get_mapping(index=index)[index]["mappings"]["properties"]
    assert properties["embedding"]["method"]["engine"] == "lucene"
    assert properties["embedding"]["dimension"] == 384
    assert properties["popularity"]["type"] == "rank_feature"
    assert properties["q2e"]["type"] == "rank_features"
    assert set(properties["title"]["fields"]) == {"prefix", "compact", "keyword", "shingles"}
    assert properties["genre"]["type"] == "keyword"
    assert properties["year"]["type"] == "integer"
    tokens = os_client.indices.analyze(
        index=index, body={"field": "artist.compact", "text": "AC/DC"}
    )["tokens"]
    assert [t["token"] for t in tokens] == ["acdc"]


def test_a_template_change_upgrades_by_reindex_and_keeps_every_document(
    os_client: OpenSearch, fresh: LtrrSettings
) -> None:
    bootstrap(os_client, fresh, MUSIC)
    alias = fresh.index_name("catalog")
    for i in range(25):
        os_client.index(
            index=alias,
            id=f"t{i}",
            body={
                "id": f"t{i}",
                "entity_type": "track",
                "title": f"Song {i}",
                "genre": ["rock"],
                "q2e": {"song": 1.0 + i},
            },
        )
    os_client.indices.refresh(index=alias)
    changed = with_field(MUSIC, "language", KeywordField(type="keyword", slot="language"))
    plan = [step.describe() for step in plan_bootstrap(os_client, fresh, changed)]
    assert plan == [
        f"put component template {fresh.index_prefix}catalog-fields",
        f"upgrade {alias}: reindex {alias}_v1 into {alias}_v2, then move the alias",
    ]
    bootstrap(os_client, fresh, changed)
    assert aliases(os_client, fresh)[f"{alias}_v2"] == [alias]
    assert aliases(os_client, fresh)[f"{alias}_v1"] == []
    assert os_client.count(index=alias)["count"] == 25
    hit = os_client.get(index=alias, id="t7")["_source"]
    assert hit["q2e"] == {"song": 8.0}
    os_client.index(
        index=alias,
        id="new",
        body={"id": "new", "entity_type": "track", "title": "New", "language": ["en"]},
    )
    with pytest.raises(Exception, match="blocked"):
        os_client.index(index=f"{alias}_v1", id="late", body={"id": "late"})
    assert bootstrap(os_client, fresh, changed) == []


def test_a_change_of_shard_count_upgrades_the_growing_indices_by_reindex(
    os_client: OpenSearch, fresh: LtrrSettings
) -> None:
    bootstrap(os_client, fresh, MUSIC)
    alias = fresh.index_name("catalog")
    os_client.index(index=alias, id="a", body={"id": "a", "entity_type": "track", "title": "A"})
    sharded = fresh.model_copy(update={"index_shards": 2})
    upgrades = [
        line.split(":")[0]
        for line in (step.describe() for step in plan_bootstrap(os_client, sharded, MUSIC))
        if line.startswith("upgrade")
    ]
    assert upgrades == [f"upgrade {sharded.index_name(n)}" for n in CHANGED]
    bootstrap(os_client, sharded, MUSIC)
    primaries = {
        index: int(found["settings"]["index"]["number_of_shards"])
        for index, found in os_client.indices.get_settings(index=f"{fresh.index_prefix}*").items()
    }
    p = fresh.index_prefix
    assert primaries == {
        **{f"{p}{name}_v2": 2 for name in CHANGED},
        **{f"{p}{name}_v1": 1 for name in ("state", "models", "profiles", *CHANGED)},
    }
    assert os_client.get(index=alias, id="a")["_source"]["title"] == "A"
    assert bootstrap(os_client, sharded, MUSIC) == []


def test_a_removed_field_is_dropped_during_the_upgrade(
    os_client: OpenSearch, fresh: LtrrSettings
) -> None:
    extended = with_field(MUSIC, "label", KeywordField(type="keyword"))
    bootstrap(os_client, fresh, extended)
    alias = fresh.index_name("catalog")
    os_client.index(
        index=alias,
        id="a",
        body={"id": "a", "entity_type": "track", "title": "A", "label": ["Sub Pop"]},
        refresh=True,
    )
    done = bootstrap(os_client, fresh, MUSIC)
    assert any("dropping fields no longer mapped: label" in line for line in done)
    assert "label" not in os_client.get(index=alias, id="a")["_source"]


def test_a_failed_upgrade_leaves_the_live_index_untouched(
    os_client: OpenSearch, fresh: LtrrSettings
) -> None:
    bootstrap(os_client, fresh, MUSIC)
    alias = fresh.index_name("catalog")
    os_client.index(
        index=alias,
        id="a",
        body={"id": "a", "entity_type": "track", "title": "A", "explicit": ["maybe"]},
        refresh=True,
    )
    retyped = with_field(MUSIC, "explicit", NumberField(type="integer"))
    with pytest.raises(LtrrError, match="failed"):
        bootstrap(os_client, fresh, retyped)
    assert aliases(os_client, fresh)[f"{alias}_v1"] == [alias]
    assert not os_client.indices.exists(index=f"{alias}_v2")
    os_client.index(
        index=alias, id="b", body={"id": "b", "entity_type": "track", "title": "B"}, refresh=True
    )
    assert os_client.count(index=alias)["count"] == 2


def test_an_index_squatting_on_the_alias_name_is_refused(
    os_client: OpenSearch, fresh: LtrrSettings
) -> None:
    os_client.indices.create(index=fresh.index_name("catalog"))
    with pytest.raises(LtrrError, match="is an index, not an alias"):
        plan_bootstrap(os_client, fresh, MUSIC)


LOGICAL = ("catalog", "ubi_queries", "ubi_events", "state", "models", "profiles")


def test_a_change_of_replicas_is_a_live_settings_update_not_a_reindex(
    os_client: OpenSearch, fresh: LtrrSettings
) -> None:
    bootstrap(os_client, fresh, MUSIC)
    replicated = fresh.model_copy(update={"index_replicas": 1})
    steps = [step.describe() for step in plan_bootstrap(os_client, replicated, MUSIC)]
    assert not [step for step in steps if step.startswith("upgrade")], steps
    p = fresh.index_prefix
    assert {f"set the replicas of {p}{name}_v1 from 0 to 1" for name in LOGICAL} <= set(steps)
    bootstrap(os_client, replicated, MUSIC)
    replicas = {
        index: int(found["settings"]["index"]["number_of_replicas"])
        for index, found in os_client.indices.get_settings(index=f"{p}*").items()
    }
    assert replicas == {f"{p}{name}_v1": 1 for name in LOGICAL}
    assert bootstrap(os_client, replicated, MUSIC) == []


def test_an_index_fingerprinted_with_its_replicas_is_still_current(
    os_client: OpenSearch, fresh: LtrrSettings
) -> None:
    """Versions made before replicas left the fingerprint hashed them in: such an index is not
    reindexed once for that, and a replicas change reaches it as a settings update too."""
    bootstrap(os_client, fresh, MUSIC)
    index = f"{fresh.index_name('catalog')}_v1"
    [logical] = [i for i in logical_indices(fresh, MUSIC) if i.name == "catalog"]
    composed = logical.body()
    del composed["mappings"]["_meta"]
    hashed = json.dumps([composed, logical.meta], sort_keys=True).encode()  # as it was hashed
    before = {**logical.meta, "fingerprint": hashlib.sha256(hashed).hexdigest()[:16]}
    os_client.indices.put_mapping(index=index, body={"_meta": {"ltrr": before}})
    assert bootstrap(os_client, fresh, MUSIC) == []
    replicated = fresh.model_copy(update={"index_replicas": 1})
    done = bootstrap(os_client, replicated, MUSIC)
    assert f"set the replicas of {index} from 0 to 1" in done
    assert not [step for step in done if step.startswith("upgrade")], done
