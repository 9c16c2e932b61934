"""Load: concurrent client threads searching and sending feedback; throughput, latency, errors,
events lost, and the client process's memory over the run.

    .venv/bin/python scripts/bench_load.py --source-prefix music- [--threads 16] [--searches 10000]
        [--attack 4]

The catalog under --source-prefix is copied (reindexed) under a throw-away prefix first, so that
the run's logs and the memory its clicks teach never touch the source; the copy is deleted at the
end (--keep leaves it). Every search is followed by feedback (an impression of the first result,
and a click, favourite or playback on one result for most searches), from one shared LTRRClient
that learns online (reward window 5 s). Afterwards the spool is drained and the UBI documents
counted: events lost = acknowledged - stored, which must be 0; stored more than acknowledged
would be duplicates.

With --attack N the load runs twice, side by side: alone, then with N more threads sending texts
that are expensive to match (long words; Thai, CJK, Arabic, Devanagari runs; many words; mixed)
as fast as they are answered. Normal searches' p50/p95 of both runs, and the attackers' answers,
failures and partial responses, are printed.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import secrets
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from opensearchpy import OpenSearch

from ltrr_os import FeedbackEvent, LTRRClient, LtrrError, SearchContext, SearchResponse
from ltrr_os.catalog import catalog_schema, load_lexicon, refresh_lexicon
from ltrr_os.config import LtrrSettings, load_settings
from ltrr_os.opensearch import bootstrap, connect

MUSIC = Path(__file__).resolve().parents[2] / "shared" / "data" / "music"
WARM_UP = 50
ACTIONS = (("click", 0.5), ("add_to_favorites", 0.1), ("playback", 0.25))  # else: no engagement
EXPENSIVE = (
    "a" * 512,
    "ก" * 500,
    "สวัสดีครับ" * 50,
    "東" * 510,
    "東京タワーの夜景 " * 50,
    " ".join(["مرحبا" * 30] * 3),
    " ".join(["नमस्ते" * 20] * 4),
    "x" * 100 + " " + "ß" * 300 + " rock queen " * 8,
)


def rss_mib() -> float:
    """Resident memory of this process (Linux)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def queries(settings: LtrrSettings, client: OpenSearch, seed: int) -> list[str]:
    """Editorial playlist titles (topical), track titles, some misspelt (known item), artist
    names, and genre/era/mood combinations from the lexicon (attribute)."""
    rng = random.Random(seed)
    with (MUSIC / "editorial_playlists.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    titles = sorted({row["track"] for row in rows})
    misspelt = [_typo(title, rng) for title in rng.sample(titles, min(300, len(titles)))]
    artists = sorted({row["artist"] for row in rows})
    values = {slot: sorted(v) for slot, v in load_lexicon(client, settings).slot_values.items()}
    attributes = [
        f"{rng.choice(values[first])} {rng.choice(values[second])}"
        for first, second in [("era", "genre"), ("mood", "genre"), ("genre", "mood")] * 100
        if values.get(first) and values.get(second)
    ]
    pool = sorted({row["playlist"] for row in rows}) + titles + misspelt + artists + attributes
    return [q.strip() for q in pool if q.strip()]


def _typo(text: str, rng: random.Random) -> str:
    if len(text) < 4:
        return text
    at = rng.randrange(1, len(text) - 1)
    return text[:at] + text[at + 1] + text[at] + text[at + 2 :]


@dataclass
class Tally:
    """What one thread saw; merged at the end."""

    attempts: int = 0
    searches: int = 0
    events: int = 0
    partial: Counter[str] = field(default_factory=Counter)
    search_ms: list[float] = field(default_factory=list)
    feedback_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    @classmethod
    def merged(cls, tallies: list[Tally]) -> Tally:
        whole = cls()
        for tally in tallies:
            whole.attempts += tally.attempts
            whole.searches += tally.searches
            whole.events += tally.events
            whole.partial += tally.partial
            whole.search_ms += tally.search_ms
            whole.feedback_ms += tally.feedback_ms
            whole.errors += tally.errors
        return whole

    def search(
        self, client: LTRRClient, text: str, context: SearchContext | None = None
    ) -> SearchResponse | None:
        """One search, timed and counted; None when it failed."""
        started = time.perf_counter()
        self.attempts += 1
        try:
            response = client.search(text, context, limit=10)
        except LtrrError as error:
            self.errors[f"search: {type(error).__name__}: {str(error)[:60]}"] += 1
            return None
        self.search_ms.append((time.perf_counter() - started) * 1000)
        self.searches += 1
        self.partial.update(f"{name}: {error[:60]}" for name, error in response.errors.items())
        return response


def work(
    client: LTRRClient,
    pool: list[str],
    count: int,
    thread: int,
    tally: Tally,
) -> None:
    rng = random.Random(thread)
    for n in range(count):
        context = SearchContext(user_id=f"load-{thread}-{n % 40}")
        response = tally.search(client, rng.choice(pool), context)
        if response is None or not response.results:
            continue
        events = [
            FeedbackEvent(
                search_id=response.search_id,
                action="impression",
                object_id=response.results[0].id,
                position=1,
                user_id=context.user_id,
            )
        ]
        draw = rng.random()
        for action, share in ACTIONS:
            if draw < share:
                position = min(len(response.results), 1 + int(rng.expovariate(0.5)))
                events.append(
                    FeedbackEvent(
                        search_id=response.search_id,
                        action=action,
                        object_id=response.results[position - 1].id,
                        position=position,
                        user_id=context.user_id,
                    )
                )
                break
            draw -= share
        started = time.perf_counter()
        try:
            receipt = client.feedback(events)
        except LtrrError as error:
            tally.errors[f"feedback: {type(error).__name__}"] += 1
            continue
        tally.feedback_ms.append((time.perf_counter() - started) * 1000)
        tally.events += receipt.accepted
        if receipt.rejected or receipt.duplicates:
            tally.errors["feedback: rejected or duplicate"] += 1


def attack(client: LTRRClient, stop: threading.Event, tally: Tally) -> None:
    """Expensive texts, one after the other, until told to stop."""
    n = 0
    while not stop.is_set():
        tally.search(client, EXPENSIVE[n % len(EXPENSIVE)][: client.settings.max_query_chars])
        n += 1


def copy_catalog(source: LtrrSettings, target: LtrrSettings, client: OpenSearch) -> float:
    """Bootstrap the target prefix with the source's schema and reindex the source catalog into
    it; returns the seconds it took."""
    started = time.perf_counter()
    bootstrap(client, target, catalog_schema(client, source))
    client.reindex(
        body={
            "source": {"index": source.index_name("catalog")},
            "dest": {"index": target.index_name("catalog")},
        },
        params={"wait_for_completion": "true", "refresh": "true"},
        request_timeout=3600,
    )
    refresh_lexicon(client, target, catalog_schema(client, target))
    return time.perf_counter() - started


def count(client: OpenSearch, index: str) -> int:
    client.indices.refresh(index=index)
    return int(client.count(index=index)["count"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-prefix", default="music-", help="the catalog to copy")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--searches", type=int, default=10_000, help="in all, each with feedback")
    parser.add_argument("--keep", action="store_true", help="keep the copy and its logs")
    parser.add_argument(
        "--attack", type=int, default=0, help="run again with this many expensive-text threads"
    )
    args = parser.parse_args()
    source = load_settings(index_prefix=args.source_prefix)
    admin = connect(source)
    with tempfile.TemporaryDirectory() as scratch:
        settings = load_settings(
            index_prefix=f"bench-load-{secrets.token_hex(3)}-",
            model_dir=Path(scratch) / "models",
            spool_dir=Path(scratch) / "spool",
            reward_window_s=5.0,
        )
        try:
            copied = copy_catalog(source, settings, admin)
            print(
                f"copied {count(admin, settings.index_name('catalog'))} entities of "
                f"{source.index_name('catalog')} to {settings.index_name('catalog')} "
                f"in {copied:.0f} s"
            )
            run(settings, admin, args.threads, args.searches, attackers=0)
            if args.attack:
                run(settings, admin, args.threads, args.searches, attackers=args.attack)
        finally:
            if not args.keep:
                admin.indices.delete(index=f"{settings.index_prefix}*", expand_wildcards="all")


def run(
    settings: LtrrSettings, admin: OpenSearch, threads: int, searches: int, attackers: int
) -> None:
    pool = queries(settings, admin, seed=11)
    tallies = [Tally() for _ in range(threads)]
    attacks = [Tally() for _ in range(attackers)]
    stop = threading.Event()
    stored_before = {
        kind: count(admin, settings.index_name(kind)) for kind in ("ubi_queries", "ubi_events")
    }
    memory: list[tuple[str, float]] = []
    warm_up = pool[:: max(1, len(pool) // WARM_UP)][:WARM_UP]
    with LTRRClient(settings) as client:
        for text in warm_up:  # caches, the encoder, connections
            client.search(text, limit=10)
        memory.append(("start", rss_mib()))
        workers = [
            threading.Thread(
                target=work,
                args=(client, pool, searches // threads + (t < searches % threads), t, tally),
            )
            for t, tally in enumerate(tallies)
        ]
        attack_threads = [
            threading.Thread(target=attack, args=(client, stop, tally)) for tally in attacks
        ]
        started = time.perf_counter()
        for worker in [*workers, *attack_threads]:
            worker.start()
        next_mark = 0.1
        while any(worker.is_alive() for worker in workers):
            time.sleep(0.2)
            if sum(tally.attempts for tally in tallies) >= next_mark * searches:
                memory.append((f"{next_mark:.0%}", rss_mib()))
                next_mark += 0.1
        wall = time.perf_counter() - started
        stop.set()
        for worker in [*workers, *attack_threads]:
            worker.join()
        memory.append(("end", rss_mib()))
        deadline = time.monotonic() + 300
        while client.flush() and time.monotonic() < deadline:
            time.sleep(1)
        pending = client.flush()
    merged, attacked = Tally.merged(tallies), Tally.merged(attacks)
    stored_searches = (
        count(admin, settings.index_name("ubi_queries"))
        - stored_before["ubi_queries"]
        - len(warm_up)
        - attacked.searches
    )
    stored_events = count(admin, settings.index_name("ubi_events")) - stored_before["ubi_events"]
    print(f"{threads} threads, {searches} searches each followed by feedback, one shared client")
    if attackers:
        answered, failed, partial = attacked.search_ms, attacked.errors, attacked.partial
        print(
            f"  under attack         {attackers} threads of expensive texts: "
            f"{attacked.searches} answered (p50 {percentile(answered, 0.5):.0f} ms, "
            f"p95 {percentile(answered, 0.95):.0f} ms), failed {failed.total()} "
            f"{dict(failed) or ''}, partial {partial.total()} {dict(partial) or ''}"
        )
    loads = " ".join(f"{load:.1f}" for load in os.getloadavg())
    print(f"  load average         {loads} (1, 5, 15 min, at the end; {os.cpu_count()} cores)")
    print(f"  wall time            {wall:.1f} s")
    print(f"  throughput           {merged.searches / wall:.1f} searches/s (each with feedback)")
    print(
        f"  search latency       p50 {percentile(merged.search_ms, 0.5):.1f} ms, "
        f"p95 {percentile(merged.search_ms, 0.95):.1f} ms, "
        f"p99 {percentile(merged.search_ms, 0.99):.1f} ms"
    )
    print(
        f"  feedback latency     p50 {percentile(merged.feedback_ms, 0.5):.1f} ms, "
        f"p99 {percentile(merged.feedback_ms, 0.99):.1f} ms"
    )
    print(f"  errors               {sum(merged.errors.values())} {dict(merged.errors) or ''}")
    print(f"  partial responses    {merged.partial.total()} {dict(merged.partial) or ''}")
    print(f"  searches logged      {stored_searches} of {merged.searches} acknowledged")
    print(
        f"  events lost          {merged.events - stored_events} "
        f"({stored_events} stored of {merged.events} acknowledged; spool pending {pending})"
    )
    print("  client RSS           " + ", ".join(f"{mark} {mib:.0f} MiB" for mark, mib in memory))


if __name__ == "__main__":
    main()
