"""The learner: throughput from the UBI logs to published state, and freshness from `feedback()`
to a serving process using what was learned.

    .venv/bin/python scripts/bench_learner.py --source-prefix music- [--searches 3000]

The catalog under --source-prefix is copied under a throw-away prefix (the run's memory and
logs never touch it; deleted at the end unless --keep). Then:

1. logs: a serving client runs --searches searches, each followed by its feedback (an
   impression of every result shown, and for most a click, favourite or playback);
2. throughput: the learner rebuilds everything from those logs (`ltrr replay`: the memory, the
   profiles and the policy), --runs times; events/s = every UBI event in the log / seconds;
3. freshness: a learner thread runs as `ltrr learn` would (lag, poll and publication at their
   defaults, a reward window of 1 s) beside serving clients; each probe engages with an item
   for a query of its own, and the clock runs from `feedback()` returning until a search finds
   the item through the memory strategy, and until a serving process decides with a policy
   version that learned the search.
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import sys
import threading
import time
from pathlib import Path

from opensearchpy import OpenSearch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_load import copy_catalog, count, queries

from ltrr_os import LTRRClient, SearchContext
from ltrr_os.catalog import catalog_schema
from ltrr_os.config import LtrrSettings, load_settings
from ltrr_os.learning import Learner, LearnerConfig
from ltrr_os.memory import reset_memory
from ltrr_os.opensearch import connect
from ltrr_os.policy import FixedPlanPolicy, VWBandit
from ltrr_os.ranking import FusedRanker

ENGAGEMENTS = (("click", 0.45), ("playback", 0.3), ("add_to_favorites", 0.05))


def make_logs(settings: LtrrSettings, admin: OpenSearch, searches: int) -> tuple[int, float]:
    """Searches with feedback through a serving client; returns (events, seconds)."""
    rng = random.Random(7)
    pool = queries(settings, admin, 7)
    started = time.perf_counter()
    with LTRRClient(settings, opensearch=admin) as client:
        for n in range(searches):
            user = f"bench-{n % 300}"
            response = client.search(rng.choice(pool), SearchContext(user_id=user), limit=10)
            events: list[dict[str, object]] = [
                {
                    "search_id": response.search_id,
                    "action": "impression",
                    "object_id": r.id,
                    "position": r.rank,
                }
                for r in response.results
            ]
            draw = rng.random()
            for action, share in ENGAGEMENTS:
                if draw < share and response.results:
                    chosen = rng.choice(response.results[:5])
                    events.append(
                        {
                            "search_id": response.search_id,
                            "action": action,
                            "object_id": chosen.id,
                            "position": chosen.rank,
                            "user_id": user,
                        }
                    )
                    break
                draw -= share
            client.feedback(events)
        while client.flush():
            time.sleep(0.5)
    return count(admin, settings.index_name("ubi_events")), time.perf_counter() - started


def throughput(settings: LtrrSettings, admin: OpenSearch, events: int, runs: int) -> None:
    """Each run first forgets the memory learned (timed apart: `ltrr replay` does it too, a
    running learner never), then learns everything again from the log."""
    schema = catalog_schema(admin, settings)
    seconds = []
    for run in range(runs):
        started = time.perf_counter()
        reset = reset_memory(admin, settings, schema)
        forgetting = time.perf_counter() - started
        learner = Learner(admin, settings, config=LearnerConfig(lag_s=0))
        started = time.perf_counter()
        report = learner.rebuild(schema, settle_all=True)
        seconds.append(time.perf_counter() - started)
        print(
            f"  run {run + 1}: {seconds[-1]:.1f} s, {events / seconds[-1]:.0f} events/s "
            f"({report.events} engagements to the memory in {report.batches} batches, "
            f"{report.memory_entities} entity updates; {report.settled} searches settled, "
            f"{report.policy_lessons} policy lessons); forgetting {reset} entities' memory "
            f"before it: {forgetting:.1f} s",
            flush=True,
        )
    median = statistics.median(seconds)
    print(f"throughput: median {events / median:.0f} events/s ({events} events, {median:.1f} s)")


def freshness(settings: LtrrSettings, admin: OpenSearch, probes: int) -> None:
    fresh = settings.model_copy(update={"reward_window_s": 1.0, "model_reload_s": 0.5})
    stop = threading.Event()
    learner = Learner(admin, fresh)
    thread = threading.Thread(target=learner.run, args=(stop,), daemon=True)
    thread.start()
    memory_s: list[float] = []
    policy_s: list[float] = []
    rng = random.Random(3)
    try:
        plan = FixedPlanPolicy({"lexical": 30, "vector": 30})
        memory_only = FixedPlanPolicy({"memory": 10})
        with (
            LTRRClient(fresh, opensearch=admin) as server,  # watches the live policy
            LTRRClient(fresh, opensearch=admin, policy=plan, ranker=FusedRanker()) as searcher,
            LTRRClient(fresh, opensearch=admin, policy=memory_only) as reader,
        ):
            for probe in range(probes):
                text = f"freshness probe {probe} {secrets.token_hex(2)} queen"
                response = searcher.search(text, limit=10)
                if not response.results:
                    continue
                target = rng.choice(response.results).id
                before = server.policy.version if isinstance(server.policy, VWBandit) else 0
                searcher.feedback(
                    [
                        {
                            "search_id": response.search_id,
                            "action": "impression",
                            "object_id": r.id,
                            "position": r.rank,
                        }
                        for r in response.results
                    ]
                    + [{"search_id": response.search_id, "action": "playback", "object_id": target}]
                )
                sent = time.perf_counter()
                seen_memory: float | None = None
                seen_policy: float | None = None
                deadline = sent + 60
                while (
                    seen_memory is None or seen_policy is None
                ) and time.perf_counter() < deadline:
                    if seen_memory is None and target in {
                        r.id for r in reader.search(text, limit=10).results
                    }:
                        seen_memory = time.perf_counter() - sent
                    version = server.policy.version if isinstance(server.policy, VWBandit) else 0
                    if seen_policy is None and version > before:
                        seen_policy = time.perf_counter() - sent
                    time.sleep(0.05)
                if seen_memory is not None:
                    memory_s.append(seen_memory)
                if seen_policy is not None:
                    policy_s.append(seen_policy)
                print(f"  probe {probe + 1}: memory {seen_memory} s, policy {seen_policy} s")
    finally:
        stop.set()
        thread.join(30)
    for name, values in (("memory", memory_s), ("policy", policy_s)):
        ordered = sorted(values)
        if ordered:
            print(
                f"freshness of the {name}: p50 {statistics.median(ordered):.2f} s, "
                f"p95 {ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]:.2f} s, "
                f"{len(ordered)} of {probes} probes"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-prefix", default="music-", help="the catalog to copy")
    parser.add_argument("--searches", type=int, default=3000, help="logged, each with feedback")
    parser.add_argument("--runs", type=int, default=3, help="throughput runs (median)")
    parser.add_argument("--probes", type=int, default=20, help="freshness probes")
    parser.add_argument("--keep", action="store_true", help="keep the copy and its logs")
    args = parser.parse_args()
    source = load_settings(index_prefix=args.source_prefix)
    admin = connect(source)
    settings = source.model_copy(
        update={
            "index_prefix": f"bench-learner-{secrets.token_hex(3)}-",
            "spool_dir": Path(f"/tmp/ltrr-bench-learner-{secrets.token_hex(3)}"),
        }
    )
    try:
        seconds = copy_catalog(source, settings, admin)
        print(f"copied {args.source_prefix}catalog in {seconds:.0f} s")
        events, seconds = make_logs(settings, admin, args.searches)
        print(f"logged {args.searches} searches and {events} events in {seconds:.0f} s")
        throughput(settings, admin, events, args.runs)
        freshness(settings, admin, args.probes)
    finally:
        if not args.keep:
            admin.indices.delete(index=f"{settings.index_prefix}*", expand_wildcards="all")


if __name__ == "__main__":
    main()
