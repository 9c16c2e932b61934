"""`ltrr bootstrap`: bring the cluster to the templates and indices this version of ltrr-os wants.

Idempotent. Each logical index is an alias over versioned indices (`ltrr-catalog` ->
`ltrr-catalog_v1`). When the wanted body differs from the live one (a template or schema change,
or shards), a new version is created, the old one is made read-only, its documents are
reindexed into the new one, counted, and the alias moves atomically; the old version is kept for
rollback. Searches read the old version until the move, then the new one.

Writes during the upgrade are refused (the old version is blocked, and writes go through the
alias with `require_alias`), never lost in an index about to be retired; they reach the new
version by being tried again after the alias moved. The writers that run during serving do that
on their own: the learner keeps a batch whose memory or profile writes were refused uncommitted
and applies it again after a backoff (its writes are keyed by batch, so what was applied before
the block and copied is not counted twice), and the spools keep UBI documents refused by a block
and deliver them later. An operator's writes are refused the same way (`ltrr ingest` reports
the rows rejected with the block as the reason, `ltrr replay` stops with an error): run them
again after the upgrade.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Protocol

from opensearchpy import OpenSearch
from opensearchpy.exceptions import TransportError

from .._errors import LtrrError
from ..config import CatalogSchema, LtrrSettings
from ..strategies import strategies
from ._templates import (
    INGEST_PIPELINE,
    LogicalIndex,
    ingest_pipeline,
    logical_indices,
    templates_dir,
)

_VERSION = re.compile(r"_v(\d+)$")
REINDEX_TIMEOUT_S = 3600.0


class Step(Protocol):
    def describe(self) -> str: ...

    def run(self, client: OpenSearch) -> None: ...


def _wait_until_allocated(client: OpenSearch, index: str) -> None:
    # With request_timeout given, opensearch-py sends `timeout` to the server as the wait limit.
    health = client.cluster.health(
        index=index, wait_for_status="yellow", timeout="60s", request_timeout=70
    )
    if health.get("timed_out"):
        raise LtrrError(f"{index} was created but its shards were not allocated within 60s")


def _fingerprint(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def _with_fingerprint(body: dict[str, Any]) -> dict[str, Any]:
    meta = {**body.get("_meta", {}), "ltrr_fingerprint": _fingerprint(body)}
    return {**body, "_meta": meta}


@dataclass(frozen=True)
class PutComponentTemplate:
    name: str
    body: dict[str, Any]

    def describe(self) -> str:
        return f"put component template {self.name}"

    def run(self, client: OpenSearch) -> None:
        client.cluster.put_component_template(name=self.name, body=self.body)


@dataclass(frozen=True)
class PutIndexTemplate:
    name: str
    body: dict[str, Any]

    def describe(self) -> str:
        return f"put index template {self.name} for {', '.join(self.body['index_patterns'])}"

    def run(self, client: OpenSearch) -> None:
        client.indices.put_index_template(name=self.name, body=self.body)


@dataclass(frozen=True)
class CreateIndex:
    index: str
    alias: str
    body: dict[str, Any]
    shared_read_alias: str | None

    def describe(self) -> str:
        return f"create index {self.index} behind alias {self.alias}"

    def run(self, client: OpenSearch) -> None:
        aliases: dict[str, Any] = {self.alias: {"is_write_index": True}}
        if self.shared_read_alias:
            aliases[self.shared_read_alias] = {}
        client.indices.create(index=self.index, body={**self.body, "aliases": aliases})
        _wait_until_allocated(client, self.index)


@dataclass(frozen=True)
class UpgradeIndex:
    """Reindex into a new version and move the alias; on any failure, undo and keep the old."""

    old: str
    new: str
    alias: str
    body: dict[str, Any]
    removed_fields: tuple[str, ...]
    shared_read_alias: str | None
    retired: tuple[str, ...]

    def describe(self) -> str:
        text = f"upgrade {self.alias}: reindex {self.old} into {self.new}, then move the alias"
        if self.removed_fields:
            text += f" (dropping fields no longer mapped: {', '.join(self.removed_fields)})"
        if self.retired:
            text += f"; delete retired {', '.join(self.retired)}"
        return text

    def run(self, client: OpenSearch) -> None:
        """Block writes to the old version (none may land in an index about to be retired),
        copy it, count, move the alias. Interrupted before the alias moved, by an error, Ctrl-C
        or SIGTERM, it undoes what it did: the copy's task cancelled, the copy deleted, the old
        version writable again. (Killed outright, the next bootstrap repairs it: see
        `RepairInterruptedUpgrade`.)"""
        task: list[str] = []
        actions: list[dict[str, Any]] = [
            {"remove": {"index": self.old, "alias": self.alias}},
            {"add": {"index": self.new, "alias": self.alias, "is_write_index": True}},
        ]
        if self.shared_read_alias:
            actions += [
                {"remove": {"index": self.old, "alias": self.shared_read_alias}},
                {"add": {"index": self.new, "alias": self.shared_read_alias}},
            ]
        try:  # from the block to the alias move: an interruption anywhere undoes it all
            # The add-block API returns once writes in flight are done (a settings change would
            # not wait for them); the refresh makes every write the copy must see searchable.
            client.indices.add_block(index=self.old, block="write")
            client.indices.refresh(index=self.old)
            client.indices.create(index=self.new, body=self.body)
            _wait_until_allocated(client, self.new)
            self._reindex(client, task)
            client.indices.refresh(index=self.new)
            before = client.count(index=self.old)["count"]
            after = client.count(index=self.new)["count"]
            if before != after:
                raise LtrrError(f"reindex copied {after} of {before} documents")
            client.indices.update_aliases(body={"actions": actions})
        except BaseException as exc:
            if not self._moved(client):
                _undo(client, self.old, [self.new], task)
            if isinstance(exc, LtrrError | TransportError):
                raise LtrrError(
                    f"upgrade of {self.alias} failed, {self.old} is unchanged: {exc}"
                ) from None
            raise
        for index in self.retired:
            client.indices.delete(index=index, ignore_unavailable=True)

    def _moved(self, client: OpenSearch) -> bool:
        """Whether the alias points to the new version (the move is atomic: all or nothing)."""
        try:
            return self.new in client.indices.get_alias(name=self.alias, ignore=404)
        except TransportError:
            return False

    def _reindex(self, client: OpenSearch, started: list[str]) -> None:
        body: dict[str, Any] = {
            "source": {"index": self.old},
            "dest": {"index": self.new, "op_type": "create"},
        }
        if self.removed_fields:
            body["script"] = {
                "lang": "painless",
                "source": "for (f in params.fields) { ctx._source.remove(f) }",
                "params": {"fields": list(self.removed_fields)},
            }
        task = client.reindex(body=body, wait_for_completion=False)["task"]
        started.append(task)
        deadline = time.monotonic() + REINDEX_TIMEOUT_S
        while True:
            status = client.tasks.get(task_id=task)
            if status.get("completed"):
                break
            if time.monotonic() > deadline:
                client.tasks.cancel(task_id=task)
                raise LtrrError(f"reindex did not finish within {REINDEX_TIMEOUT_S:.0f}s")
            time.sleep(0.5)
        if "error" in status:
            raise LtrrError(f"reindex failed: {status['error'].get('reason', status['error'])}")
        failures = status.get("response", {}).get("failures") or []
        if failures:
            first = failures[0].get("cause", {}).get("reason", failures[0])
            raise LtrrError(f"reindex failed for {len(failures)} document(s), first: {first}")


def _undo(client: OpenSearch, live: str, copies: list[str], tasks: list[str]) -> None:
    """Cancel the copies' reindex tasks, delete the copies, make the live version writable:
    best effort, each step on its own (the node may be what failed)."""
    for task in tasks:
        with contextlib.suppress(TransportError):
            client.tasks.cancel(task_id=task)
    for copy in copies:
        with contextlib.suppress(TransportError):
            client.indices.delete(index=copy, ignore_unavailable=True)
    with contextlib.suppress(TransportError):
        client.indices.put_settings(index=live, body={"index.blocks.write": None})


@dataclass(frozen=True)
class SharedReadAlias:
    """Join (or leave) a read alias other tools read, e.g. `ubi_queries` for UBI dashboards:
    only this deployment's index is added or removed, the others in it are untouched."""

    index: str
    name: str
    join: bool

    def describe(self) -> str:
        return (
            f"{'add' if self.join else 'remove'} {self.index} {'to' if self.join else 'from'} "
            f"the shared read alias {self.name}"
        )

    def run(self, client: OpenSearch) -> None:
        if self.join:
            client.indices.put_alias(index=self.index, name=self.name)
        else:
            client.indices.delete_alias(index=self.index, name=self.name, ignore=404)


@dataclass(frozen=True)
class SetReplicas:
    """A change of `index_replicas` is a live settings update: OpenSearch adds or drops the
    copies while the index serves, nothing is reindexed."""

    index: str
    before: int
    after: int

    def describe(self) -> str:
        return f"set the replicas of {self.index} from {self.before} to {self.after}"

    def run(self, client: OpenSearch) -> None:
        client.indices.put_settings(
            index=self.index, body={"index": {"number_of_replicas": self.after}}
        )


@dataclass(frozen=True)
class SharedNameTaken:
    """The shared read alias was asked for, but an index of that name exists (the UBI plugin
    creates `ubi_queries` and `ubi_events`): it is left alone, nothing is joined."""

    name: str
    alias: str

    def describe(self) -> str:
        return (
            f"not joining the shared read alias {self.name}: an index of that name exists (the "
            f"UBI plugin's?) and is left alone; UBI tools can read {self.alias}"
        )

    def run(self, client: OpenSearch) -> None:
        """Nothing to do: saying so is the step."""


def _reindex_tasks(client: OpenSearch, into: list[str]) -> list[str]:
    """Running reindex tasks that copy into these indices."""
    found = client.tasks.list(actions="*reindex", detailed=True)
    return [
        task_id
        for node in found.get("nodes", {}).values()
        for task_id, task in node.get("tasks", {}).items()
        if any(f"[{index}]" in str(task.get("description", "")) for index in into)
    ]


@dataclass(frozen=True)
class RepairInterruptedUpgrade:
    """An upgrade killed before it finished (the process killed, or the node lost) left the live
    version read-only and a partial copy: undo them before anything else."""

    live: str
    orphans: tuple[str, ...]
    blocked: bool

    def describe(self) -> str:
        what = []
        if self.orphans:
            what.append(f"delete the partial copy {', '.join(self.orphans)}")
        if self.blocked:
            what.append(f"make {self.live} writable again")
        return f"repair an interrupted upgrade: {' and '.join(what)}"

    def run(self, client: OpenSearch) -> None:
        _undo(client, self.live, list(self.orphans), _reindex_tasks(client, list(self.orphans)))


@dataclass(frozen=True)
class PutPipeline:
    name: str
    body: dict[str, Any]

    def describe(self) -> str:
        return f"put ingest pipeline {self.name}"

    def run(self, client: OpenSearch) -> None:
        client.ingest.put_pipeline(id=self.name, body=self.body)


def _pipeline_steps(client: OpenSearch, settings: LtrrSettings) -> list[Step]:
    name = settings.index_name(INGEST_PIPELINE)
    wanted = ingest_pipeline()
    stored = client.ingest.get_pipeline(id=name, ignore=404).get(name)
    return [] if stored == wanted else [PutPipeline(name, wanted)]


@dataclass(frozen=True)
class PutSearchTemplate:
    template_id: str
    source: str

    def describe(self) -> str:
        return f"store search template {self.template_id}"

    def run(self, client: OpenSearch) -> None:
        client.put_script(
            id=self.template_id, body={"script": {"lang": "mustache", "source": self.source}}
        )


def _search_template_steps(client: OpenSearch, settings: LtrrSettings) -> list[Step]:
    steps: list[Step] = []
    for strategy in strategies().values():
        source = templates_dir().joinpath("search", strategy.template).read_text(encoding="utf-8")
        template_id = strategy.template_id(settings)
        stored = client.get_script(id=template_id, ignore=404)
        if not stored.get("found") or stored["script"]["source"] != source:
            steps.append(PutSearchTemplate(template_id, source))
    return steps


def _stored_meta_fingerprint(stored: dict[str, Any] | None) -> str | None:
    if not stored:
        return None
    return (stored.get("_meta") or {}).get("ltrr_fingerprint")


def _component_steps(
    client: OpenSearch, settings: LtrrSettings, logical: LogicalIndex
) -> list[Step]:
    steps: list[Step] = []
    names = []
    for component, body in logical.components.items():
        name = logical.component_name(settings, component)
        names.append(name)
        wanted = _with_fingerprint(body)
        stored = None
        if client.cluster.exists_component_template(name=name):
            found = client.cluster.get_component_template(name=name)["component_templates"]
            stored = found[0]["component_template"]
        if _stored_meta_fingerprint(stored) != wanted["_meta"]["ltrr_fingerprint"]:
            steps.append(PutComponentTemplate(name, wanted))
    alias = logical.alias(settings)
    index_template = _with_fingerprint(
        {
            "index_patterns": [f"{alias}_v*"],
            "composed_of": names,
            "priority": 500,
            "template": {"settings": {"index": logical.index_settings()}},
            "_meta": {"description": f"ltrr-os {logical.name}"},
        }
    )
    stored = None
    if client.indices.exists_index_template(name=alias):
        stored = client.indices.get_index_template(name=alias)["index_templates"][0][
            "index_template"
        ]
    if _stored_meta_fingerprint(stored) != index_template["_meta"]["ltrr_fingerprint"]:
        steps.append(PutIndexTemplate(alias, index_template))
    return steps


def _index_steps(client: OpenSearch, settings: LtrrSettings, logical: LogicalIndex) -> list[Step]:
    alias = logical.alias(settings)
    body = logical.body()
    if client.indices.exists(index=alias) and not client.indices.exists_alias(name=alias):
        raise LtrrError(
            f"{alias} is an index, not an alias; ltrr-os keeps versioned indices behind that "
            "name. Move or delete it, or choose another index_prefix."
        )
    versions = sorted(
        (int(m.group(1)), name)
        for name in client.indices.get(index=f"{alias}_v*", expand_wildcards="all")
        if (m := _VERSION.search(name)) and name.startswith(f"{alias}_v")
    )
    next_index = f"{alias}_v{versions[-1][0] + 1 if versions else 1}"
    shared, notice = _shared_alias(client, logical, alias)
    if not client.indices.exists_alias(name=alias):
        return [*notice, CreateIndex(next_index, alias, body, shared)]
    current = next(iter(client.indices.get_alias(name=alias)))
    steps: list[Step] = [*notice]
    found = _VERSION.search(current)
    number = int(found.group(1)) if found else 0
    orphans = tuple(name for version, name in versions if version > number)
    live_settings = (
        client.indices.get_settings(
            index=current, name="index.blocks.write,index.number_of_replicas"
        )
        .get(current, {})
        .get("settings", {})
        .get("index", {})
    )
    blocked = str(live_settings.get("blocks", {}).get("write", "false")).lower() == "true"
    replicas = int(live_settings.get("number_of_replicas", logical.replicas))
    if orphans or blocked:
        steps.append(RepairInterruptedUpgrade(current, orphans, blocked))
    if logical.shared_read_alias and (member := _in_alias(client, current, logical)) != bool(
        shared
    ):
        steps.append(SharedReadAlias(current, logical.shared_read_alias, join=not member))
    mapping = client.indices.get_mapping(index=current)[current]["mappings"]
    live = (mapping.get("_meta") or {}).get("ltrr", {}).get("fingerprint")
    if logical.current(live, replicas):
        if replicas != logical.replicas:
            steps.append(SetReplicas(current, replicas, logical.replicas))
        return steps
    wanted_fields = set(body["mappings"].get("properties", {}))
    removed = tuple(sorted(set(mapping.get("properties", {})) - wanted_fields))
    retired = tuple(name for _, name in versions if name not in (current, next_index, *orphans))
    return [
        *steps,
        UpgradeIndex(current, next_index, alias, body, removed, shared, retired),
    ]


def _shared_alias(
    client: OpenSearch, logical: LogicalIndex, alias: str
) -> tuple[str | None, list[Step]]:
    """The shared read alias to be in (None: none wanted, or its name is another index's)."""
    name = logical.shared_read_alias
    if not name or not logical.join_shared_alias:
        return None, []
    if client.indices.exists(index=name) and not client.indices.exists_alias(name=name):
        return None, [SharedNameTaken(name, alias)]
    return name, []


def _in_alias(client: OpenSearch, index: str, logical: LogicalIndex) -> bool:
    name = logical.shared_read_alias
    return bool(name) and bool(client.indices.exists_alias(name=name, index=index))


def plan_bootstrap(client: OpenSearch, settings: LtrrSettings, schema: CatalogSchema) -> list[Step]:
    """What bootstrap would do, read from the cluster without changing it."""
    steps: list[Step] = _pipeline_steps(client, settings)
    for logical in logical_indices(settings, schema):
        steps += _component_steps(client, settings, logical)
        steps += _index_steps(client, settings, logical)
    return steps + _search_template_steps(client, settings)


def bootstrap(client: OpenSearch, settings: LtrrSettings, schema: CatalogSchema) -> list[str]:
    """Apply the plan; returns what was done (empty when everything was already current)."""
    done = []
    for step in plan_bootstrap(client, settings, schema):
        step.run(client)
        done.append(step.describe())
    return done
