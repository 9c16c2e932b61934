"""Scale on one node: how ingest, index size, node memory, search latency, known-item success
and kNN recall change with the catalog's size.

    .venv/bin/python scripts/bench_scale.py --sizes 50000 200000 1000000 [--queries 200]

For each size, scripts/make_catalog.py derives a catalog from the real sample (vectors included:
nothing is encoded) with judged known-item queries; it is bootstrapped and ingested under a
throw-away prefix (deleted at the end unless --keep). Then, for the judged queries:

- latency of each strategy alone at 100 candidates and of every strategy at 100 in one
  `_msearch/template` (the `retrieve` stage of `LTRRClient.search`: the round trip), p50/p95;
- known-item success@10 of the whole plan, ranked by the fused score;
- kNN recall@100: the vector strategy's 100 against the exact 100 nearest by cosine
  (`script_score` over every entity).

The node's heap and the catalog's size on disk per entity (as ingest leaves it, before the
force-merge to one segment that makes latencies comparable) are read from OpenSearch; with
--ingest-only they are all it measures. Run it on a quiet machine: the client and the node share
the cores.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from opensearchpy import OpenSearch

from ltrr_os import LTRRClient
from ltrr_os.catalog import ingest_rows, read_rows, refresh_lexicon
from ltrr_os.config import LtrrSettings, load_schema, load_settings
from ltrr_os.embedding import Encoder, load_encoder
from ltrr_os.opensearch import bootstrap, connect
from ltrr_os.policy import FixedPlanPolicy
from ltrr_os.strategies import strategies

SCRIPTS = Path(__file__).resolve().parent
SIZE = 100


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def judged(path: Path) -> list[tuple[str, str]]:
    """(text, the relevant entity id) of each judged query beside the catalog."""
    stem = path.with_suffix("")
    texts = dict(
        line.split("\t", 1) for line in stem.with_suffix(".queries.tsv").read_text().splitlines()
    )
    wanted = {
        qid: doc
        for qid, _, doc, _ in (
            line.split() for line in stem.with_suffix(".qrels.txt").read_text().splitlines()
        )
    }
    return [(texts[qid], wanted[qid]) for qid in texts]


def exact_neighbours(client: OpenSearch, index: str, vector: list[float]) -> list[str]:
    body = {
        "size": SIZE,
        "_source": False,
        "query": {
            "script_score": {
                "query": {"match_all": {}},
                "script": {
                    "source": "knn_score",
                    "lang": "knn",
                    "params": {
                        "field": "embedding",
                        "query_value": vector,
                        "space_type": "cosinesimil",
                    },
                },
            }
        },
    }
    return [hit["_id"] for hit in client.search(index=index, body=body)["hits"]["hits"]]


def measure(
    settings: LtrrSettings,
    client: OpenSearch,
    encoder: Encoder,
    catalog: Path,
    queries: int,
    ingest_only: bool = False,
) -> dict[str, Any]:
    schema = load_schema("music")
    bootstrap(client, settings, schema)
    started = time.perf_counter()
    report = ingest_rows(client, settings, schema, read_rows(catalog), encoder)
    ingest_s = time.perf_counter() - started
    refresh_lexicon(client, settings, schema)
    alias = settings.index_name("catalog")
    client.indices.flush(index=alias)
    stats = client.indices.stats(index=alias)["_all"]["primaries"]  # as ingest leaves it
    # One segment per catalog, so that latencies compare across sizes.
    client.indices.forcemerge(index=alias, max_num_segments=1, request_timeout=3600)
    heap = [
        node["jvm"]["mem"]["heap_used_in_bytes"]
        for node in client.nodes.stats(metric="jvm")["nodes"].values()
    ]
    found: dict[str, Any] = {
        "entities": report.indexed,
        "ingest_per_s": report.indexed / ingest_s,
        "bytes_per_entity": stats["store"]["size_in_bytes"] / max(1, stats["docs"]["count"]),
        "heap_mib": sum(heap) / 2**20,
    }
    if ingest_only:
        return found
    pairs = judged(catalog)[:queries]
    plans = {name: {name: SIZE} for name in strategies()} | {"all": {"*": SIZE}}
    for name, plan in plans.items():
        latencies, successes = [], []
        with LTRRClient(
            settings, opensearch=client, encoder=encoder, policy=FixedPlanPolicy(plan)
        ) as ltrr:
            for text, wanted in pairs:
                response = ltrr.search(text, limit=10)
                latencies.append(response.timings_ms["retrieve"])
                successes.append(any(r.id == wanted for r in response.results))
        found[f"{name}_p50_ms"] = percentile(latencies, 0.5)
        found[f"{name}_p95_ms"] = percentile(latencies, 0.95)
        if name == "all":
            found["success_at_10"] = statistics.fmean(successes)
    recalls = []
    with LTRRClient(
        settings, opensearch=client, encoder=encoder, policy=FixedPlanPolicy({"vector": SIZE})
    ) as ltrr:
        for text, _ in pairs[:100]:
            approximate = {c.id for c in ltrr.search(text, limit=SIZE).results}
            exact = exact_neighbours(client, alias, encoder.encode_one(text))
            recalls.append(len(approximate & set(exact)) / max(1, len(exact)))
    found["knn_recall_at_100"] = statistics.fmean(recalls)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200, help="judged queries per size")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the catalogs' indices")
    parser.add_argument(
        "--ingest-only", action="store_true", help="measure ingest, size and heap; no searches"
    )
    args = parser.parse_args()
    encoder = load_encoder()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.sizes:
            catalog = Path(scratch) / f"catalog-{size}.jsonl"
            subprocess.run(
                [
                    sys.executable,
                    str(SCRIPTS / "make_catalog.py"),
                    f"--entities={size}",
                    f"--seed={args.seed}",
                    f"--queries={args.queries}",
                    f"--out={catalog}",
                ],
                check=True,
            )
            settings = load_settings(
                index_prefix=f"scale-{size}-{secrets.token_hex(2)}-",
                spool_dir=Path(scratch) / f"spool-{size}",
            )
            client = connect(settings)
            try:
                rows.append(
                    measure(settings, client, encoder, catalog, args.queries, args.ingest_only)
                )
            finally:
                if not args.keep:
                    client.indices.delete(index=f"{settings.index_prefix}*", expand_wildcards="all")
            print(rows[-1], flush=True)
    loads = " ".join(f"{load:.1f}" for load in os.getloadavg())
    print(f"\nload average at the end {loads} (1, 5, 15 min; {os.cpu_count()} cores)")
    columns = [key for key in rows[0] if key != "entities"] if rows else []
    print("| entities | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for row in rows:
        cells = [f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns]
        print(f"| {row['entities']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
