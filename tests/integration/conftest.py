"""Shared fixtures of the integration tests: the encoder, a slice of the real music catalog, and
nodes of a test's own that it may stop, freeze and kill."""

from __future__ import annotations

import functools
import re
import socket
import subprocess
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch, helpers

from ltrr_os.catalog import (
    SourceRow,
    build_music_catalog,
    catalog_schema,
    ingest_rows,
    load_lexicon,
    refresh_lexicon,
)
from ltrr_os.config import LtrrSettings, load_schema
from ltrr_os.embedding import Encoder, load_encoder
from ltrr_os.opensearch import bootstrap
from ltrr_os.pipeline import SearchPipeline, opensearch_retriever
from ltrr_os.strategies import StrategyContext

from ..conftest import REPO, RUNNER

MUSIC = load_schema("music")
MUSIC_DIR = REPO.parent / "shared" / "data" / "music"
SLICE_ARTISTS = {
    "Queen",
    "Taylor Swift",
    "AC/DC",
    "Green Day",
    "Bon Jovi",
    "Journey",
    "Europe",
    "The Lumineers",
    "KT Tunstall",
    "Dolly Parton",
    "Beyoncé",
    "Eminem",
}


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    return load_encoder()


@functools.cache
def music_entities() -> tuple[dict[str, Any], ...]:
    """The whole music catalog, built once per session."""
    return tuple(build_music_catalog(MUSIC_DIR).entities)


def load_music(
    client: OpenSearch,
    settings: LtrrSettings,
    encoder: Encoder,
    artists: Collection[str],
    extra: list[dict[str, Any]] | None = None,
) -> int:
    """Bootstrap the music schema under the settings' prefix and ingest these artists' entities
    (and `extra`); returns how many were ingested."""
    bootstrap(client, settings, MUSIC)
    chosen = [e for e in music_entities() if e.get("artist") in artists] + (extra or [])
    rows = [SourceRow("slice", i, entity) for i, entity in enumerate(chosen)]
    report = ingest_rows(client, settings, MUSIC, rows, encoder)
    assert report.rejected == []
    refresh_lexicon(client, settings, MUSIC)
    return report.indexed


@pytest.fixture(scope="session")
def music_settings(
    settings: LtrrSettings, os_client: OpenSearch, encoder: Encoder
) -> Iterator[LtrrSettings]:
    """A catalog of a dozen well-known artists, every 200th other entity, and two tracks with the
    same title and different popularity, bootstrapped and ingested once per session."""
    own = settings.model_copy(update={"index_prefix": f"{settings.index_prefix}music-"})
    twins = [
        {
            "id": f"track:twin-{p}",
            "entity_type": "track",
            "title": "Zebra Crossing Anthem",
            "artist": f"Band {p}",
            "popularity": p / 10,
        }
        for p in (1, 9)
    ]
    load_music(os_client, own, encoder, SLICE_ARTISTS, [*music_entities()[::200], *twins])
    yield own
    os_client.indices.delete(index=f"{own.index_prefix}*")


class Processes:
    """Processes of a test's own (servers, learners) run from the repository, each one's output
    and errors in files of `directory` (a pipe nobody reads stops its writer once full)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[subprocess.Popen[str]] = []

    def start(
        self, name: str, command: list[str], environment: dict[str, str]
    ) -> subprocess.Popen[str]:
        with (
            (self.directory / f"{name}.out").open("w") as out,
            (self.directory / f"{name}.err").open("w") as err,
        ):
            process = subprocess.Popen(
                command, cwd=REPO, env=environment, stdout=out, stderr=err, text=True
            )
        self.started.append(process)
        return process

    def output(self, name: str) -> str:
        return (self.directory / f"{name}.out").read_text()

    def errors(self, name: str) -> str:
        """The end of what it wrote to stderr (for an assertion's message)."""
        return (self.directory / f"{name}.err").read_text()[-3000:]


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Start processes; those still running when the test ends are killed."""
    own = Processes(tmp_path)
    yield own
    for process in own.started:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def pipeline(
    music_settings: LtrrSettings, os_client: OpenSearch, encoder: Encoder
) -> SearchPipeline:
    """The search pipeline over the music slice, straight to OpenSearch."""
    schema = catalog_schema(os_client, music_settings)
    context = StrategyContext(settings=music_settings, schema=schema, encoder=encoder)
    return SearchPipeline(
        schema,
        load_lexicon(os_client, music_settings),
        context,
        opensearch_retriever(os_client),
        budget=400,
    )


def stored_versions(client: OpenSearch, index: str) -> dict[str, int]:
    """_id -> _version of every document: version 1 means it was written exactly once."""
    client.indices.refresh(index=index)
    hits = helpers.scan(client, index=index, query={"_source": False, "version": True}, size=5000)
    return {hit["_id"]: hit["_version"] for hit in hits}


@dataclass(frozen=True)
class LocalNodes:
    """Nodes of a test's own, run by scripts/opensearch-local on loopback ports from `port`."""

    port: int
    nodes: int = 1
    heap: str = "512m"
    security: bool = False

    @property
    def _runner(self) -> list[str]:
        options = ["--port", str(self.port), "--nodes", str(self.nodes), "--heap", self.heap]
        return [str(RUNNER), *options, *(["--security"] if self.security else [])]

    def run(self, command: str, *options: str) -> str:
        command_line = [*self._runner, *options, command]
        return subprocess.run(command_line, check=True, capture_output=True, text=True).stdout

    def status(self) -> subprocess.CompletedProcess[str]:
        """Exit code 0 when every node runs; the output names each node's pid."""
        return subprocess.run([*self._runner, "status"], capture_output=True, text=True)

    def running(self) -> bool:
        return self.status().returncode == 0

    def url(self, node: int = 1) -> str:
        return f"{'https' if self.security else 'http'}://127.0.0.1:{self.port + node - 1}"

    def ca(self) -> Path:
        """The CA that signed a secured cluster's certificates."""
        return Path(self.run("ca").strip())

    @property
    def urls(self) -> str:
        """Every node, comma-separated (as `opensearch_url` takes them)."""
        return ",".join(self.url(node) for node in range(1, self.nodes + 1))

    def pid(self, node: int = 1) -> int:
        found = re.search(rf"^node {node}: running, pid ([0-9]+)", self.status().stdout, re.M)
        assert found, f"node {node} on {self.port} is not running"
        return int(found.group(1))


def free_ports(nodes: int = 1, start: int = 9260) -> int:
    """A base port whose HTTP ports (base..base+nodes-1) and transport ports (base+100...) no
    other process holds: other programs may hold ports on the machine that runs the tests."""
    for base in range(start, 20_000, 10):
        wanted = [base + i for i in range(nodes)] + [base + 100 + i for i in range(nodes)]
        if all(_free(port) for port in wanted):
            return base
    raise RuntimeError(f"no {nodes} free HTTP and transport ports from {start}")


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextmanager
def local_nodes(
    port: int | None = None, nodes: int = 1, *, security: bool = False
) -> Iterator[LocalNodes]:
    """Start nodes of the test's own on free ports (or the given base); afterwards leave them as
    found."""
    own = LocalNodes(port if port is not None else free_ports(nodes), nodes, security=security)
    was_running = own.running()
    own.run("start")
    try:
        yield own
    finally:
        own.run("stop" if not was_running else "start")


@pytest.fixture(scope="session")
def own_node() -> Iterator[LocalNodes]:
    """A single node of the session's own, which tests may stop, freeze and kill, as long as they
    leave it running."""
    with local_nodes() as node:
        yield node
