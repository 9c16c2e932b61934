"""Where the OpenSearch node for integration tests comes from, decided once per session:
OPENSEARCH_URL if set; else a testcontainers container if a Docker engine answers; else the local
runner (scripts/opensearch-local), started here and stopped again if this session started it."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from ltrr_os.config import LtrrSettings
from ltrr_os.opensearch import connect

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "scripts" / "opensearch-local"
OPENSEARCH_IMAGE = "opensearchproject/opensearch:2.19.1"


def _docker_engine_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def opensearch_url() -> Iterator[str]:
    if url := os.environ.get("OPENSEARCH_URL"):
        yield url
        return
    if _docker_engine_answers():
        from testcontainers.community.opensearch import OpenSearchContainer

        with OpenSearchContainer(OPENSEARCH_IMAGE) as container:
            config = container.get_config()
            yield f"http://{config['host']}:{config['port']}"
        return
    port = os.environ.get("LTRR_OS_PORT", "9200")
    runner = [str(RUNNER), "--port", port]
    was_running = subprocess.run([*runner, "status"], capture_output=True).returncode == 0
    subprocess.run([*runner, "start"], check=True)
    yield f"http://127.0.0.1:{port}"
    if not was_running:
        subprocess.run([*runner, "stop"], check=True)


@pytest.fixture(scope="session")
def settings(opensearch_url: str) -> LtrrSettings:
    """Settings for this session: its own index prefix, so runs never see each other's data."""
    return LtrrSettings(
        opensearch_url=opensearch_url, index_prefix=f"ltrr-test-{secrets.token_hex(3)}-"
    )


@pytest.fixture(scope="session")
def os_client(settings: LtrrSettings) -> Iterator[OpenSearch]:
    client = connect(settings)
    yield client
    client.indices.delete(index=f"{settings.index_prefix}*", expand_wildcards="all")
    client.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration/ talks to a real node."""
    for item in items:
        if "integration" in item.path.relative_to(REPO).parts:
            item.add_marker(pytest.mark.integration)
