"""Benchmark what LTRRClient adds around OpenSearch: per search, the time outside the
`_msearch/template` round trip (understanding, the policy's decision, query encoding, union,
features and ranking, logging to the spool), p50/p99, one search at a time.

    .venv/bin/python scripts/bench_client.py --index-prefix music- [--searches 2000]

Queries come from the simulated users of `ltrr simulate` (known items with typos, editorial
playlist titles, attribute and ambiguous head queries). The policy is a fresh default bandit
that learns online. The searches' UBI query documents are deleted at the end.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from opensearchpy import helpers

from ltrr_os import LTRRClient
from ltrr_os.catalog import catalog_entities, catalog_schema
from ltrr_os.config import load_settings
from ltrr_os.evaluation import build_world
from ltrr_os.opensearch import connect

STAGES = ("understand", "decide", "retrieve", "round_trip", "rank", "log", "total")


def _percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"p50 {statistics.median(ordered):7.2f}  p99 {p99:7.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index-prefix", required=True)
    parser.add_argument("--searches", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        settings = load_settings(
            index_prefix=args.index_prefix,
            model_dir=Path(scratch) / "models",
            spool_dir=Path(scratch) / "spool",
        )
        opensearch = connect(settings)
        schema = catalog_schema(opensearch, settings)
        entities = list(catalog_entities(opensearch, settings, schema))
        world = build_world(entities, [], seed=args.seed)
        searches = world.searches(args.warmup + args.searches)
        timings: dict[str, list[float]] = {stage: [] for stage in (*STAGES, "overhead")}
        search_ids = []
        with LTRRClient(settings, opensearch=opensearch) as client:
            for n, search in enumerate(searches):
                response = client.search(search.text)
                search_ids.append(response.search_id)
                if n < args.warmup:
                    continue
                for stage in STAGES:
                    timings[stage].append(response.timings_ms.get(stage, 0.0))
                overhead = response.timings_ms["total"] - response.timings_ms["round_trip"]
                timings["overhead"].append(overhead)
        index = settings.index_name("ubi_queries")
        opensearch.indices.refresh(index=index)
        helpers.bulk(
            opensearch,
            ({"_op_type": "delete", "_index": index, "_id": sid} for sid in search_ids),
            raise_on_error=False,
        )
    print(f"{args.searches} searches after {args.warmup} warm-up ones, ms per search:")
    for stage, values in timings.items():
        print(f"  {stage:<10} {_percentiles(values)}")


if __name__ == "__main__":
    main()
