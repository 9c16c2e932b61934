from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def ltrr(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ltrr_os", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)},
    )


def test_configuration_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    result = ltrr("--config", str(tmp_path / "missing.toml"), "doctor", cwd=tmp_path)
    assert result.returncode == 2
    assert "config file not found" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_unreachable_opensearch_is_reported_clearly(tmp_path: Path) -> None:
    config = tmp_path / "ltrr.toml"
    config.write_text('opensearch_url = "http://127.0.0.1:9"\nmax_retries = 0\n')
    result = ltrr("doctor", cwd=tmp_path)
    assert result.returncode == 2
    assert "cannot reach OpenSearch" in result.stderr
    assert "Traceback" not in result.stderr
