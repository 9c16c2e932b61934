"""`ltrr simulate` on a real node: every policy faces the same stream through the serving
pipeline, the figures are consistent with each other, runs are reproducible, and the catalog's
memory is left as found."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch
from typer.testing import CliRunner

from ltrr_os.cli import app
from ltrr_os.config import LtrrSettings
from ltrr_os.embedding import Encoder
from ltrr_os.memory import MemoryBatch, MemoryUpdate, apply_memory, observed_entities

from .conftest import load_music

ARTISTS = {"Queen", "Taylor Swift", "AC/DC", "Bon Jovi", "Journey", "Dolly Parton", "Eminem"}
POLICIES = ["lexical", "memory", "all", "ltrr", "oracle"]


@pytest.fixture(scope="module")
def sim_settings(
    settings: LtrrSettings, os_client: OpenSearch, encoder: Encoder
) -> Iterator[LtrrSettings]:
    own = settings.model_copy(update={"index_prefix": f"{settings.index_prefix}sim-"})
    load_music(os_client, own, encoder, ARTISTS)
    yield own
    os_client.indices.delete(index=f"{own.index_prefix}*")


def run_simulate(settings: LtrrSettings, out: Path, *options: str) -> Any:
    policies = [f"--policies={name}" for name in POLICIES]
    result = CliRunner().invoke(
        app,
        [
            "--index-prefix",
            settings.index_prefix,
            "simulate",
            "--out",
            str(out),
            *policies,
            *options,
        ],
    )
    return result


def test_policies_side_by_side_give_consistent_figures_and_a_report(
    sim_settings: LtrrSettings, os_client: OpenSearch, tmp_path: Path
) -> None:
    result = run_simulate(sim_settings, tmp_path, "--searches", "400", "--seed", "3")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    policies = {name: summary["policies"][name]["whole_run"] for name in POLICIES}
    for metrics in policies.values():
        assert 0 <= metrics["success_at_10"] <= metrics["candidate_recall"] + 0.05
        assert metrics["latency_ms_p50"] > 0
    # All strategies at the largest size retrieve a superset of any single strategy's list,
    # and the oracle retrieves a wanted item whenever any strategy did, at the lowest cost.
    assert policies["all"]["candidate_recall"] >= policies["lexical"]["candidate_recall"]
    assert policies["oracle"]["cumulative_regret"] == 0
    assert policies["ltrr"]["candidates_per_query"] < policies["all"]["candidates_per_query"]
    assert summary["parameters"]["searches"] == 400
    assert summary["parameters"]["candidate_budget"] == sim_settings.candidate_budget
    assert summary["versions"]["opensearch"].count(".") == 2
    assert set(summary["off_policy"]) == {"lexical", "memory", "all"}
    report = (tmp_path / "report.md").read_text()
    assert "| ltrr |" in report
    assert "## Retrieval alone" in report
    assert (tmp_path / "frontier.png").stat().st_size > 0
    assert "success@10" in result.output
    assert observed_entities(os_client, sim_settings) == 0, "the run's memory is removed"


def test_the_same_seed_gives_the_same_figures_up_to_term_statistics(
    sim_settings: LtrrSettings, tmp_path: Path
) -> None:
    """The stream and the users repeat exactly; the lists may shift a little, because the first
    run's memory writes leave soft-deleted versions that BM25 statistics still count."""
    figures = []
    for run in ("first", "second"):
        result = run_simulate(sim_settings, tmp_path / run, "--searches", "200", "--seed", "5")
        assert result.exit_code == 0, result.output
        summary = json.loads((tmp_path / run / "summary.json").read_text())
        figures.append({name: p["whole_run"] for name, p in summary["policies"].items()})
    first, second = figures
    for name in ("lexical", "memory", "all", "oracle"):
        assert first[name]["candidate_recall"] == second[name]["candidate_recall"]
        assert first[name]["success_at_10"] == pytest.approx(
            second[name]["success_at_10"], abs=0.02
        )
    assert first["ltrr"]["success_at_10"] == pytest.approx(
        second["ltrr"]["success_at_10"], abs=0.05
    )


def test_memory_learned_from_real_users_is_left_as_it_was(
    sim_settings: LtrrSettings, os_client: OpenSearch, tmp_path: Path
) -> None:
    """Each simulated policy learns in a namespace of its own, removed at the end: the
    deployment's own memory is neither read nor changed."""
    catalog = sim_settings.index_name("catalog")
    hit = os_client.search(index=catalog, body={"size": 1})
    entity = hit["hits"]["hits"][0]["_id"]
    batch = MemoryBatch()
    batch.add(MemoryUpdate(entity_id=entity, query="a real query", weight=1.0, timestamp=now()))
    apply_memory(os_client, sim_settings, batch, 1, now())
    os_client.indices.refresh(index=catalog)
    before = os_client.get(index=catalog, id=entity)["_source"]
    result = run_simulate(sim_settings, tmp_path, "--searches", "100")
    assert result.exit_code == 0, result.output
    after = os_client.get(index=catalog, id=entity)["_source"]
    assert (after["q2e"], after["memory_batches"]) == (before["q2e"], before["memory_batches"])
    assert observed_entities(os_client, sim_settings) == 1
    lone = CliRunner().invoke(
        app,
        [
            "--index-prefix",
            sim_settings.index_prefix,
            "simulate",
            "--out",
            str(tmp_path),
            "--queries",
            str(tmp_path / "q.tsv"),
        ],
    )
    assert lone.exit_code != 0
    assert "--queries and --qrels go together" in lone.output


def test_judged_only_users_pursue_only_the_judged_queries(
    sim_settings: LtrrSettings, tmp_path: Path
) -> None:
    (tmp_path / "q.tsv").write_text("q1\tqueen greatest hits\nq2\tdolly parton\n")
    (tmp_path / "r.txt").write_text("q1 0 artist:queen 1\nq2 0 artist:dolly-parton 1\n")
    result = run_simulate(
        sim_settings,
        tmp_path / "out",
        "--searches",
        "100",
        "--queries",
        str(tmp_path / "q.tsv"),
        "--qrels",
        str(tmp_path / "r.txt"),
        "--judged-only",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["parameters"]["intents"] == 2


def now() -> datetime:
    return datetime.now(UTC)
