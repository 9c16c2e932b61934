"""What the terminal shows: catalog data, paths and column names that look like rich markup are
printed as they are, by every command that prints them, against a real node."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from opensearchpy import OpenSearch
from typer.testing import CliRunner

from ltrr_os.cli import app
from ltrr_os.config import LtrrSettings

MARKUP = "[bold]Loud[/] [feat. DVNO] [/]"


@pytest.fixture
def prefix(settings: LtrrSettings, os_client: OpenSearch) -> Iterator[str]:
    own = f"{settings.index_prefix}markup-{secrets.token_hex(2)}-"
    yield own
    os_client.indices.delete(index=f"{own}*", expand_wildcards="all")


def ltrr(settings: LtrrSettings, prefix: str, *args: str, stdin: str | None = None) -> str:
    result = CliRunner().invoke(
        app,
        ["--index-prefix", prefix, *args],
        input=stdin,
        env={"LTRR_OPENSEARCH_URL": settings.opensearch_url},
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result.output


def test_markup_like_text_is_printed_as_it_is(
    settings: LtrrSettings, prefix: str, tmp_path: Path
) -> None:
    odd = tmp_path / "runs [b] [red]x"
    odd.mkdir()
    catalog = odd / "catalog.jsonl"
    catalog.write_text(
        json.dumps(
            {
                "id": "document:odd",
                "entity_type": "document",
                "title": MARKUP,
                "body": "a song about loud voices",
                "[bold]column": "ignored",
            }
        )
        + "\n"
    )
    out = ltrr(settings, prefix, "bootstrap", "--schema", "documents")
    assert f"create index {prefix}catalog_v1" in out
    out = ltrr(settings, prefix, "ingest", str(catalog), "--schema", "documents")
    assert "[bold]column" in out
    out = ltrr(settings, prefix, "search", "loud voices", "--limit", "3")
    assert "[bold]Loud[/]" in out
    assert "[feat. DVNO]" in out
    queries, qrels = odd / "q.tsv", odd / "r.txt"
    queries.write_text("q1\tloud voices\n")
    qrels.write_text("q1 0 document:odd 1\n")
    out = ltrr(
        settings,
        prefix,
        "evaluate",
        "--queries",
        str(queries),
        "--qrels",
        str(qrels),
        "--out",
        str(odd / "eval [i]"),
    )
    assert "union/fused" in out
    assert "[red]x" in out
    out = ltrr(settings, prefix, "feedback", "-", stdin='{"search_id": "[/]", "action": 1}\n')
    assert "rejected line 1" in out
    out = ltrr(settings, prefix, "models", "list")
    assert "kind" in out
