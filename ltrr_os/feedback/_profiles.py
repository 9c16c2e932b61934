"""User profiles: what each user engaged with, aggregated by slot value (genre=rock, era=1980s),
for the policy's context and the ranker's user-affinity feature."""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

from .._durable import replace_atomically
from ..policy import UserProfile

log = logging.getLogger(__name__)
TOP_AFFINITIES = 5


class UserProfiles:
    """Engagement counts per user and 'slot=value', bounded to the most recent users."""

    def __init__(self, max_users: int = 100_000) -> None:
        self._counts: OrderedDict[str, Counter[str]] = OrderedDict()
        self._totals: dict[str, int] = {}
        self._max_users = max_users
        self._lock = threading.Lock()

    def get(self, user_id: str | None) -> UserProfile:
        if user_id is None:
            return UserProfile()
        with self._lock:
            counts = self._counts.get(user_id)
            if not counts:
                return UserProfile(user_id=user_id)
            total = sum(counts.values())
            return UserProfile(
                user_id=user_id,
                affinities={k: round(v / total, 4) for k, v in counts.most_common(TOP_AFFINITIES)},
                engagements=self._totals.get(user_id, 0),
            )

    def engage(self, user_id: str, attributes: Mapping[str, Sequence[str]]) -> None:
        """Count one engagement with an entity carrying these slot attributes."""
        with self._lock:
            counts = self._counts.pop(user_id, None) or Counter()
            for slot, values in attributes.items():
                for value in values:
                    counts[f"{slot}={value}"] += 1
            self._counts[user_id] = counts
            self._totals[user_id] = self._totals.get(user_id, 0) + 1
            while len(self._counts) > self._max_users:
                evicted, _ = self._counts.popitem(last=False)
                self._totals.pop(evicted, None)

    def save(self, path: Path) -> None:
        """Atomically replace the profiles file."""
        with self._lock:
            payload = {
                "users": {u: dict(c) for u, c in self._counts.items()},
                "totals": self._totals,
            }
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(path, json.dumps(payload).encode())

    @classmethod
    def load(cls, path: Path, max_users: int = 100_000) -> UserProfiles:
        """Profiles from a file; a missing or corrupt file gives empty profiles and a warning."""
        profiles = cls(max_users)
        if not path.exists():
            return profiles
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            for user, counts in payload["users"].items():
                profiles._counts[str(user)] = Counter({str(k): int(v) for k, v in counts.items()})
            profiles._totals = {str(u): int(t) for u, t in payload["totals"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("user profiles in %s are unreadable (%s); starting empty", path, exc)
            return cls(max_users)
        return profiles
