"""A serving process for the multi-process tests: `python -m tests.integration._serve NAME N
[UNTIL]` searches N times as users of its own (with UNTIL, a path: and then on until that file
exists) and sends feedback for each search (impressions of what it showed, a playback or a click,
each sent twice), with settings from the environment (`LTRR_*`). It prints one line per
acknowledged search and event (`search ID`, `event KEY`), one per acknowledged search that came
back partial (`partial ID ERRORS`), and one per search that failed (`failed REASON`: never
acknowledged; on a loaded cluster, a missed deadline).
"""

from __future__ import annotations

import itertools
import json
import random
import sys
from pathlib import Path

from ltrr_os import LTRRClient, OpenSearchUnavailableError, SearchContext, load_settings

QUERIES = ["queen", "shake it off", "bohemian rhapsody", "love story", "80s rock", "love"]


def lines(output: str) -> dict[str, list[str]]:
    """What serving processes printed, by kind (search, partial, failed, event)."""
    found: dict[str, list[str]] = {"search": [], "partial": [], "failed": [], "event": []}
    for line in output.splitlines():
        kind, _, value = line.partition(" ")
        found[kind].append(value)
    return found


def serve(name: str, searches: int, until: Path | None = None) -> None:
    rng = random.Random(name)
    with LTRRClient(load_settings()) as client:
        for n in itertools.count():
            if n >= searches and (until is None or until.exists()):
                break
            user = f"{name}-user-{n % 3}"
            try:
                response = client.search(
                    rng.choice(QUERIES),
                    SearchContext(user_id=user, session_id=f"{name}-s"),
                    limit=5,
                )
            except OpenSearchUnavailableError as exc:
                print("failed", " ".join(str(exc).split()), flush=True)
                continue
            print("search", response.search_id, flush=True)
            if response.partial:
                print("partial", response.search_id, json.dumps(response.errors), flush=True)
            if not response.results:
                continue
            shown = [
                {
                    "search_id": response.search_id,
                    "action": "impression",
                    "object_id": result.id,
                    "position": result.rank,
                    "event_id": f"{response.search_id}-seen-{result.rank}",
                }
                for result in response.results
            ]
            chosen = rng.choice(response.results)
            engaged = {
                "search_id": response.search_id,
                "action": rng.choice(["playback", "click"]),
                "object_id": chosen.id,
                "position": chosen.rank,
                "user_id": user,
                "event_id": f"{response.search_id}-engaged",
            }
            for _ in range(2):  # a repeat is stored once, learned once
                receipt = client.feedback([*shown, engaged])
                assert receipt.rejected == [], receipt
            for event in [*shown, engaged]:
                print("event", event["event_id"], flush=True)
        assert client.flush() == 0


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None)
