"""Latency of one `_msearch/template` running every strategy, on a bootstrapped, ingested catalog.

    .venv/bin/python scripts/bench_retrieval.py --index-prefix music- --size 100 --rounds 3

Queries: the editorial playlist titles (topical) and as many track titles (known-item) from the
music data. Prints the median and p95 of the client-side round trip and each strategy's `took`.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

from ltrr_os.catalog import catalog_schema, load_lexicon
from ltrr_os.config import load_settings
from ltrr_os.embedding import load_encoder
from ltrr_os.opensearch import connect
from ltrr_os.strategies import StrategyContext, retrieve, strategies
from ltrr_os.understanding import understand

MUSIC = Path(__file__).resolve().parents[2] / "shared" / "data" / "music"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index-prefix", default=None)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    overrides = {"index_prefix": args.index_prefix} if args.index_prefix else {}
    settings = load_settings(**overrides)
    client = connect(settings)
    context = StrategyContext(
        settings=settings, schema=catalog_schema(client, settings), encoder=load_encoder()
    )
    lexicon = load_lexicon(client, settings)
    with (MUSIC / "editorial_playlists.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    topical = sorted({row["playlist"] for row in rows})
    known = sorted({row["track"] for row in rows})[:: max(1, len(rows) // 800)][: len(topical)]
    queries = topical + known
    plan = dict.fromkeys(strategies(), args.size)
    for query in queries[:20]:  # warm up caches and the encoder
        retrieve(client, plan, understand(query, lexicon), context)
    round_trips: list[float] = []
    took: dict[str, list[float]] = {name: [] for name in plan}
    for _ in range(args.rounds):
        for query in queries:
            retrieval = retrieve(client, plan, understand(query, lexicon), context)
            round_trips.append(retrieval.round_trip_ms)
            for name, result in retrieval.results.items():
                if result.ok:
                    took[name].append(result.took_ms)
    print(f"{len(queries)} queries x {args.rounds} rounds, every strategy at size {args.size}")
    print(
        f"_msearch/template round trip: p50 {statistics.median(round_trips):.1f} ms, "
        f"p95 {percentile(round_trips, 0.95):.1f} ms"
    )
    for name, values in took.items():
        if values:
            print(f"  {name:12} took p50 {statistics.median(values):5.1f} ms  (ran {len(values)}x)")


if __name__ == "__main__":
    main()
