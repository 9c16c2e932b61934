"""User profiles: what each user engaged with, aggregated by slot value (genre=rock, era=1980s),
for the policy's context and the ranker's user-affinity feature; and the ledger that caps how
much one user can add to the memory of one entity for one query in a day.

The learner is the only writer (`ProfileStore`, one document per user in `<prefix>profiles`);
serving processes read profiles by user id through a small cache (`ProfileCache`)."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import TransportError
from pydantic import BaseModel, Field, ValidationError

from .._errors import LtrrError
from ..config import LtrrSettings
from ..opensearch import opensearch_error
from ..policy import UserProfile

log = logging.getLogger(__name__)
TOP_AFFINITIES = 5
TASTE_HALF_LIFE_S = 30 * 86_400.0
"""An engagement a month old weighs half a new one in the user's taste."""
SESSION_HALF_LIFE_S = 3_600.0
"""The recent taste (in effect, the session's): an engagement an hour old weighs half."""
VECTOR_DIGITS = 5
LEDGER_ENTRIES = 500
"""Ledger lines kept per user (today's, newest first): more distinct (query, entity) pairs in a
day than this and the oldest of them can be engaged with again at full weight."""


class DecayedMean(BaseModel):
    """A weighted mean of vectors in which older additions weigh less (halved every
    `half_life_s`). Additions out of time order count as if made at the newest time."""

    mean: list[float]
    weight: float = Field(gt=0)
    at: datetime
    half_life_s: float = Field(gt=0)

    def weight_at(self, moment: datetime) -> float:
        elapsed = max(0.0, (moment - self.at).total_seconds())
        return float(self.weight * 0.5 ** (elapsed / self.half_life_s))

    @classmethod
    def add(
        cls,
        held: DecayedMean | None,
        vector: Sequence[float],
        weight: float,
        at: datetime,
        half_life_s: float,
    ) -> DecayedMean:
        if held is None or len(held.mean) != len(vector):
            mean, total = np.asarray(vector, dtype=np.float64), weight
        else:
            at = max(at, held.at)
            before = held.weight_at(at)
            total = before + weight
            mean = (before * np.asarray(held.mean) + weight * np.asarray(vector)) / total
        rounded = [round(float(v), VECTOR_DIGITS) for v in mean]
        return cls(mean=rounded, weight=total, at=at, half_life_s=half_life_s)


def _unit(vector: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


class Profile(BaseModel):
    """One user's stored profile."""

    user_id: str
    counts: dict[str, int] = Field(default_factory=dict, description="'slot=value' -> count")
    engagements: int = 0
    ledger: dict[str, float] = Field(
        default_factory=dict,
        description="'<day>|<memory key>|<entity>' -> memory weight this user added that day",
    )
    batch: int = Field(default=0, description="the last learner batch applied")
    updated_at: datetime | None = None
    taste: DecayedMean | None = Field(
        default=None, description="vectors of what the user engaged with, a month's half-life"
    )
    recent: DecayedMean | None = Field(
        default=None, description="the same over the last hour or so: the session's taste"
    )

    def view(self, now: datetime | None = None) -> UserProfile:
        """What the policy, the strategies and the ranker see: the top affinities as shares of
        the counts, and the taste (the recent one added by how recent it still is at `now`)."""
        taste = None
        if self.taste is not None:
            vector = _unit(np.asarray(self.taste.mean))
            if self.recent is not None:
                weight = min(1.0, self.recent.weight_at(now or datetime.now(UTC)))
                vector = _unit(vector + weight * _unit(np.asarray(self.recent.mean)))
            taste = [round(float(v), VECTOR_DIGITS) for v in vector]
        total = sum(self.counts.values())
        top = Counter(self.counts).most_common(TOP_AFFINITIES)
        return UserProfile(
            user_id=self.user_id,
            affinities={k: round(v / total, 4) for k, v in top},
            engagements=self.engagements,
            taste=taste,
        )

    def engage(
        self,
        attributes: Mapping[str, Sequence[str]],
        vector: Sequence[float] | None = None,
        weight: float = 1.0,
        at: datetime | None = None,
    ) -> None:
        """Count one engagement with an entity carrying these slot attributes, and move the
        taste towards its vector by the engagement's weight."""
        for slot, values in attributes.items():
            for value in values:
                key = f"{slot}={value}"
                self.counts[key] = self.counts.get(key, 0) + 1
        self.engagements += 1
        if vector is not None and weight > 0 and at is not None:
            self.taste = DecayedMean.add(self.taste, vector, weight, at, TASTE_HALF_LIFE_S)
            self.recent = DecayedMean.add(self.recent, vector, weight, at, SESSION_HALF_LIFE_S)

    def allow(self, day: str, key: str, entity: str, weight: float, cap: float) -> float:
        """How much of `weight` this user may still add to `entity` for `key` on `day` (at most
        `cap` in all), recorded as added."""
        line = f"{day}|{key}|{entity}"
        used = self.ledger.get(line, 0.0)
        allowed = max(0.0, min(weight, cap - used))
        if allowed > 0:
            self.ledger = {
                k: v for k, v in self.ledger.items() if k.startswith(f"{day}|") and k != line
            }
            self.ledger = {line: used + allowed, **self.ledger}
            while len(self.ledger) > LEDGER_ENTRIES:
                self.ledger.pop(next(reversed(self.ledger)))
        return allowed


class ProfileStore:
    """Profiles in OpenSearch, written by the learner in numbered batches."""

    def __init__(self, client: OpenSearch, settings: LtrrSettings) -> None:
        self._client = client
        self._settings = settings
        self.index = settings.index_name("profiles")

    def read(self, user_ids: Iterable[str]) -> dict[str, Profile]:
        """The stored profiles of these users (new, empty ones for users without)."""
        ids = sorted(set(user_ids))
        found: dict[str, Profile] = {u: Profile(user_id=u) for u in ids}
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            try:
                docs = self._client.mget(index=self.index, body={"ids": chunk})["docs"]
            except TransportError as exc:
                raise opensearch_error(exc, self._settings.opensearch_url) from None
            for doc in docs:
                if (profile := self.parse(doc)) is not None:
                    found[doc["_id"]] = profile
        return found

    @staticmethod
    def parse(doc: Mapping[str, Any]) -> Profile | None:
        """The profile in a get/mget answer; None when there is none or it is unreadable."""
        if not doc.get("found"):
            return None
        try:
            return Profile.model_validate(doc["_source"])
        except ValidationError:
            log.warning("profile of user %s is unreadable; starting it again", doc.get("_id"))
            return None

    def write(self, profiles: Iterable[Profile]) -> None:
        """Store these profiles (each whole); raises LtrrError when any write failed."""
        actions = (
            {
                "_op_type": "index",
                "_index": self.index,
                "_id": profile.user_id,
                "_source": profile.model_dump(mode="json"),
            }
            for profile in profiles
        )
        failed = [
            item
            for ok, item in helpers.streaming_bulk(
                self._client,
                actions,
                chunk_size=1000,
                raise_on_error=False,
                raise_on_exception=False,
                max_retries=3,
                require_alias=True,
            )
            if not ok
        ]
        if failed:
            raise LtrrError(f"{len(failed)} profile writes failed; first: {failed[0]}")

    def get(self, user_id: str) -> UserProfile:
        return self.read([user_id])[user_id].view()

    def delete_all(self) -> None:
        """Forget every profile (before the learner rebuilds them from the log). The refresh
        first: delete-by-query only sees searchable documents, and a profile written a moment
        ago would survive and cap the rebuilt engagements."""
        self._client.indices.refresh(index=self.index)
        self._client.delete_by_query(
            index=self.index,
            body={"query": {"match_all": {}}},
            refresh=True,
            conflicts="proceed",
        )


class ProfileCache:
    """What servers read profiles through: bounded, each entry fresh for `ttl_s` seconds. A
    lookup that fails (OpenSearch away) serves an empty profile rather than failing the
    search."""

    def __init__(self, store: ProfileStore, ttl_s: float = 10.0, max_users: int = 10_000) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._max_users = max_users
        self._entries: OrderedDict[str, tuple[float, UserProfile]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, user_id: str | None) -> UserProfile:
        if user_id is None:
            return UserProfile()
        if (cached := self.cached(user_id)) is not None:
            return cached
        try:
            profile = self._store.get(user_id)
        except LtrrError as exc:
            log.warning("profile of %s unavailable (%s); searching without it", user_id, exc)
            return UserProfile(user_id=user_id)
        self.remember(user_id, profile)
        return profile

    def cached(self, user_id: str) -> UserProfile | None:
        """The user's profile if it was read less than `ttl_s` ago."""
        with self._lock:
            entry = self._entries.get(user_id)
            if entry is None or time.monotonic() - entry[0] >= self._ttl_s:
                return None
            self._entries.move_to_end(user_id)
            return entry[1]

    def remember(self, user_id: str, profile: UserProfile) -> None:
        """Keep a profile read now (by this cache or by an asyncio client's own lookup)."""
        with self._lock:
            self._entries[user_id] = (time.monotonic(), profile)
            self._entries.move_to_end(user_id)
            while len(self._entries) > self._max_users:
                self._entries.popitem(last=False)
