"""A serving process for the multi-process tests: `python -m tests.integration._serve NAME N`
searches N times as users of its own and sends feedback for each search (impressions of what
it showed, a playback or a click, each sent twice), with settings from the environment
(`LTRR_*`). It prints one line per acknowledged search and event (`search ID`, `event KEY`); a
search that misses its deadline on a loaded cluster is skipped (it was never acknowledged)."""

from __future__ import annotations

import random
import sys

from ltrr_os import LTRRClient, OpenSearchUnavailableError, SearchContext, load_settings

QUERIES = ["queen", "shake it off", "bohemian rhapsody", "love story", "80s rock", "love"]


def serve(name: str, searches: int) -> None:
    rng = random.Random(name)
    with LTRRClient(load_settings()) as client:
        for n in range(searches):
            user = f"{name}-user-{n % 3}"
            try:
                response = client.search(
                    rng.choice(QUERIES),
                    SearchContext(user_id=user, session_id=f"{name}-s"),
                    limit=5,
                )
            except OpenSearchUnavailableError:
                continue  # a loaded cluster missed the deadline: nothing acknowledged
            print("search", response.search_id, flush=True)
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
    serve(sys.argv[1], int(sys.argv[2]))
