"""The local node runner refuses ports other programs hold, and says which one."""

from __future__ import annotations

import socket
import subprocess

import pytest

from ..conftest import RUNNER
from .conftest import free_ports


@pytest.mark.parametrize(("offset", "kind"), [(0, "HTTP port"), (100, "transport port")])
def test_a_taken_port_is_named_before_anything_starts(offset: int, kind: str) -> None:
    base = free_ports(1, start=9800)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", base + offset))
        holder.listen()
        result = subprocess.run(
            [str(RUNNER), "--port", str(base), "start"], capture_output=True, text=True, timeout=120
        )
    assert result.returncode != 0
    assert f"{kind} {base + offset}" in result.stderr + result.stdout
    assert "is taken by another process" in result.stderr + result.stdout
