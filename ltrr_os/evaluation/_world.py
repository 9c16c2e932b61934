"""Simulated users over the real catalog: what they search for, how they misspell it, and how
they engage with what they are shown.

Query families, drawn from a fixed pool of intents with Zipf weights (head intents repeat, tail
intents are fresh):
- known-item: a title, an artist, "artist title" / "title artist", an album, or the first words of
  a title, of an entity drawn by popularity; typos from a noise model (keyboard neighbours,
  dropped, doubled or swapped letters, phonetic spellings) hit a share of them;
- topical: the editorial playlist titles (or an external judged query set); the wanted items are
  the playlist's tracks;
- attribute: genre, era and mood combinations present in the catalog ("1990s hip hop", "chill
  acoustic"); the wanted items are the tracks carrying them;
- ambiguous: one-word head queries ("love", "rock") whose wanted items span several intents
  (titles containing the word, the genre of that name).
Each user has a taste of their own, drawn independently of anything the catalog says about an
item (no genre, era or mood decides it): among wanted items they engage more with those they
like. Profiles (which count genres and eras) and templates (which filter on them) only see it
through engagement. Attribute intents are judged by curation, which no template reads: the
wanted items are the tracks with those attributes that editors put in a playlist. Clicks follow
a position-based model (the chance to examine a result falls with its rank); a click on a wanted
item often leads to playback or to adding it to favourites.
"""

from __future__ import annotations

import math
import random
import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

Family = Literal["known_item", "topical", "attribute", "ambiguous"]
FAMILIES: tuple[Family, ...] = ("known_item", "topical", "attribute", "ambiguous")
EXAMINATION = (1.0, 0.85, 0.72, 0.62, 0.53, 0.46, 0.40, 0.35, 0.31, 0.27)
"""Probability that a user looks at the result at each rank (position-based click model)."""
NOISE_CLICK = 0.02
"""Chance to click a shown item that is not wanted."""
LIKED_PERCENT = 30
"""Share of the catalog each user likes (which share is the user's own)."""

_KEYBOARD = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]
_PHONETIC = [
    ("ph", "f"),
    ("or", "er"),
    ("er", "or"),
    ("ee", "ea"),
    ("y", "ie"),
    ("c", "k"),
    ("s", "z"),
    ("ou", "u"),
    ("ck", "k"),
    ("ie", "y"),
    ("i", "y"),
]


def _neighbours() -> dict[str, str]:
    near: dict[str, str] = {}
    for row_index, row in enumerate(_KEYBOARD):
        for col, ch in enumerate(row):
            options = [row[c] for c in (col - 1, col + 1) if 0 <= c < len(row)]
            for other in (row_index - 1, row_index + 1):
                if 0 <= other < len(_KEYBOARD) and col < len(_KEYBOARD[other]):
                    options.append(_KEYBOARD[other][col])
            near[ch] = "".join(options)
    return near


_NEAR = _neighbours()


def misspell(text: str, rng: random.Random) -> str:
    """One realistic typo in a word of at least four letters (or the text unchanged)."""
    words = text.split()
    candidates = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not candidates:
        return text
    i = rng.choice(candidates)
    word = words[i].lower()
    kind = rng.random()
    pos = rng.randrange(1, len(word))
    if kind < 0.3:
        phonetic = [(a, b) for a, b in _PHONETIC if a in word]
        if phonetic:
            a, b = rng.choice(phonetic)
            word = word.replace(a, b, 1)
        else:
            word = word[:pos] + word[pos + 1 :]
    elif kind < 0.55 and word[pos] in _NEAR:
        word = word[:pos] + rng.choice(_NEAR[word[pos]]) + word[pos + 1 :]
    elif kind < 0.75:
        word = word[:pos] + word[pos + 1 :]
    elif kind < 0.9:
        word = word[:pos] + word[pos] + word[pos:]
    else:
        word = word[: pos - 1] + word[pos] + word[pos - 1] + word[pos + 1 :]
    words[i] = word
    return " ".join(words)


@dataclass(frozen=True)
class Intent:
    """What a simulated user wants: a query text and the items that satisfy it."""

    text: str
    family: Family
    wanted: frozenset[str]
    typo_prone: bool = False


@dataclass(frozen=True)
class SimulatedUser:
    user_id: str
    taste: int
    """Seeds which items the user likes: a hidden share of the catalog, unrelated to its fields."""

    def likes(self, item: str) -> bool:
        return zlib.crc32(f"{self.taste}/{item}".encode()) % 100 < LIKED_PERCENT


@dataclass(frozen=True)
class SimulatedSearch:
    index: int
    intent: Intent
    text: str
    user: SimulatedUser
    timestamp: datetime


@dataclass(frozen=True)
class Engagement:
    position: int
    object_id: str
    action: str


@dataclass
class World:
    """The catalog as the simulated users know it, and the pool of intents they draw from."""

    intents: list[Intent]
    weights: list[float]
    users: list[SimulatedUser]
    typo_rate: float
    seed: int
    start: datetime = field(default_factory=lambda: datetime(2026, 1, 5, tzinfo=UTC))

    def searches(self, count: int) -> list[SimulatedSearch]:
        """The stream every policy faces: the same for the same seed."""
        rng = random.Random(self.seed)
        drawn = rng.choices(range(len(self.intents)), weights=self.weights, k=count)
        stream = []
        for index, intent_index in enumerate(drawn):
            intent = self.intents[intent_index]
            text = intent.text
            if intent.typo_prone and rng.random() < self.typo_rate:
                text = misspell(text, rng)
            user = rng.choice(self.users)
            # Searches spread over four weeks, at all hours.
            moment = self.start + timedelta(minutes=index * 28 * 24 * 60 / max(count, 1))
            stream.append(SimulatedSearch(index, intent, text, user, moment))
        return stream

    def engage(
        self, search: SimulatedSearch, shown: Sequence[str], rng: random.Random
    ) -> list[Engagement]:
        """The user scans the results top down; each is examined with a probability that falls
        with rank; a wanted one is clicked (more surely when it is of a genre they like), often
        played or saved; they stop at their first playback."""
        events: list[Engagement] = []
        for position, item in enumerate(shown[: len(EXAMINATION)], start=1):
            if rng.random() >= EXAMINATION[position - 1]:
                continue
            events.append(Engagement(position, item, "impression"))
            wanted = item in search.intent.wanted
            liked = search.user.likes(item)
            attraction = (0.9 if liked else 0.65) if wanted else NOISE_CLICK
            if search.intent.family == "known_item" and wanted:
                attraction = 0.95
            if rng.random() >= attraction:
                continue
            events.append(Engagement(position, item, "click"))
            if wanted and rng.random() < 0.3:
                events.append(Engagement(position, item, "add_to_favorites"))
            if rng.random() < (0.75 if wanted else 0.1):
                events.append(Engagement(position, item, "playback"))
                break
        return events


def _zipf(count: int, exponent: float, rng: random.Random) -> list[float]:
    ranks = list(range(1, count + 1))
    rng.shuffle(ranks)
    return [1.0 / rank**exponent for rank in ranks]


def build_world(
    entities: Sequence[Mapping[str, Any]],
    judged: Sequence[tuple[str, frozenset[str]]],
    *,
    seed: int,
    users: int = 500,
    pool: int = 6000,
    typo_rate: float = 0.25,
    zipf_exponent: float = 1.0,
    mix: Mapping[Family, float] | None = None,
) -> World:
    """Intents from the catalog's own entities and attributes plus the judged topical queries.
    The same entities give the same world for the same seed, in whatever order they come."""
    rng = random.Random(seed)
    entities = sorted(entities, key=lambda e: str(e["id"]))
    given: Mapping[Family, float] = mix or {
        "known_item": 0.5,
        "topical": 0.2,
        "attribute": 0.2,
        "ambiguous": 0.1,
    }
    mix = {family: float(given.get(family, 0.0)) for family in FAMILIES}
    tracks = [e for e in entities if e.get("entity_type") == "track"]
    intents: dict[Family, list[Intent]] = {family: [] for family in FAMILIES}

    popular = sorted(entities, key=lambda e: -float(e.get("popularity") or 0.0))
    head = popular[: max(1, int(pool * mix["known_item"]) * 3)]
    for entity in rng.sample(head, k=min(len(head), int(pool * mix["known_item"]))):
        intents["known_item"].append(_known_item(entity, rng))

    intents["topical"] = [Intent(text, "topical", wanted) for text, wanted in judged if wanted]

    with_attributes: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for track in tracks:
        for era in track.get("era") or ():
            for genre in track.get("genre") or ():
                with_attributes[(str(era), str(genre))].add(str(track["id"]))
        for mood in track.get("mood") or ():
            for genre in track.get("genre") or ():
                with_attributes[(str(mood), str(genre))].add(str(track["id"]))
            with_attributes[(str(mood),)].add(str(track["id"]))
    curated = frozenset(item for _, wanted in judged for item in wanted)
    for key, matching in sorted(with_attributes.items(), key=lambda kv: -len(kv[1])):
        wanted = matching & curated if curated else matching
        if len(wanted) >= 5:
            intents["attribute"].append(Intent(" ".join(key), "attribute", frozenset(wanted)))

    words: dict[str, set[str]] = defaultdict(set)
    for track in tracks:
        for word in str(track.get("title", "")).lower().split():
            if word.isalpha() and len(word) >= 3:
                words[word].add(str(track["id"]))
    for word, wanted in sorted(words.items(), key=lambda kv: -len(kv[1]))[:60]:
        extra = {str(t["id"]) for t in tracks if word in (t.get("genre") or ())}
        intents["ambiguous"].append(Intent(word, "ambiguous", frozenset(wanted | extra)))

    pool_intents: list[Intent] = []
    weights: list[float] = []
    for family in FAMILIES:
        members = intents[family]
        if not members or mix.get(family, 0.0) <= 0:
            continue
        family_weights = _zipf(len(members), zipf_exponent, rng)
        total = sum(family_weights)
        pool_intents += members
        weights += [mix[family] * w / total for w in family_weights]
    simulated_users = [SimulatedUser(f"user-{n}", rng.randrange(1 << 30)) for n in range(users)]
    return World(pool_intents, weights, simulated_users, typo_rate, seed)


def _known_item(entity: Mapping[str, Any], rng: random.Random) -> Intent:
    title, artist = str(entity.get("title", "")), str(entity.get("artist", ""))
    kind = entity.get("entity_type")
    options = [title]
    if kind in ("track", "album") and artist:
        options += [f"{artist} {title}", f"{title} {artist}"]
    words = title.split()
    if len(words) >= 3:
        options.append(" ".join(words[: math.ceil(len(words) / 2)]))
    if kind == "track" and entity.get("album"):
        options.append(str(entity["album"]))
    return Intent(rng.choice(options), "known_item", frozenset({str(entity["id"])}), True)
