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
  (titles containing the word, the genre of that name);
- related: an artist's name, wanting one of the artist's most popular tracks (not the artist);
- vague: a genre or a mood ("rock", "chill"), where the user's taste decides: the wanted items
  are the few of that genre or mood closest to the user's taste (given the catalog's vectors).
Each user has a taste of their own, drawn independently of anything the catalog says about an
item (no genre, era or mood decides it): among wanted items they engage more with those they
like; and, with vectors, a point in the embedding space (a random track's vector) that decides
what they want from a vague query. New entities (`Newcomer`) join the catalog in batches as the
stream goes: they can be wanted by vague queries of their genre or mood and by known-item
searches for their title once added. Profiles (which count genres and eras) and templates (which
filter on them) only see the taste through engagement. Attribute intents are judged by
curation, which no template reads: the wanted items are the tracks with those attributes that
editors put in a playlist. Clicks follow a position-based model (the chance to examine a result
falls with its rank); a click on a wanted item often leads to playback or to adding it to
favourites.
"""

from __future__ import annotations

import math
import random
import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt

Family = Literal["known_item", "topical", "attribute", "ambiguous", "related", "vague"]
FAMILIES: tuple[Family, ...] = get_args(Family)
EXAMINATION = (1.0, 0.85, 0.72, 0.62, 0.53, 0.46, 0.40, 0.35, 0.31, 0.27)
"""Probability that a user looks at the result at each rank (position-based click model)."""
NOISE_CLICK = 0.02
"""Chance to click a shown item that is not wanted."""
LIKED_PERCENT = 30
"""Share of the catalog each user likes (which share is the user's own)."""
TASTE_SHARE = 0.05
"""A vague query wants this share of its genre or mood (at least TASTE_MIN), nearest the taste."""
TASTE_MIN = 10
RELATED_WANTED = 3
"""An artist-name search in the related family wants one of the artist's top tracks."""
TASTE_PULL = 0.3
"""Share of a user's known-item searches that look for a track near their taste: what people
look up by name says what they like."""
TASTE_NEIGHBOURS = 50
NEW_ENTITIES = 200
NEW_BATCHES = 8
"""New entities join the catalog in this many batches, spread over the first 80% of the run."""
NEW_POPULARITY = 0.02
NEW_KNOWN_ITEM_SHARE = 0.03
"""Share of searches, once new entities arrived, that look for one of them by title."""

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
    """What a simulated user wants: a query text and the items that satisfy it (for a vague
    intent, the items it may want: which of them depends on the user's taste)."""

    text: str
    family: Family
    wanted: frozenset[str]
    typo_prone: bool = False
    pool: str = ""
    """Vague intents: the genre or mood they range over (new entities of it join)."""


@dataclass(frozen=True)
class SimulatedUser:
    user_id: str
    taste: int
    """Seeds which items the user likes: a hidden share of the catalog, unrelated to its fields."""
    center: int = -1
    """Which track's vector is the user's point of taste (vague intents), -1 for none."""

    def likes(self, item: str) -> bool:
        return zlib.crc32(f"{self.taste}/{item}".encode()) % 100 < LIKED_PERCENT


@dataclass(frozen=True)
class Newcomer:
    """An entity that joins the catalog during the run, after `arrives` (a share of it)."""

    entity: dict[str, Any]
    arrives: float
    pools: tuple[str, ...]

    @property
    def id(self) -> str:
        return str(self.entity["id"])


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
    newcomers: list[Newcomer] = field(default_factory=list)
    vectors: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)
    """Unit vectors of the vague intents' items, the users' points of taste and the arrived
    newcomers."""
    centers: list[str] = field(default_factory=list)
    """The tracks whose vectors are users' points of taste."""
    arrived: set[str] = field(default_factory=set)
    titles: dict[str, str] = field(default_factory=dict)
    """Titles of the tracks with vectors: what a user looks up by name near their taste."""
    _wanted: dict[tuple[str, str, int], frozenset[str]] = field(default_factory=dict)

    def near_taste(self, user: SimulatedUser) -> list[str]:
        """The tracks nearest the user's point of taste, nearest first."""
        if user.center < 0 or not self.titles:
            return []
        ids = sorted(self.titles)
        scores = np.stack([self.vectors[i] for i in ids]) @ self.vectors[self.centers[user.center]]
        return [ids[i] for i in np.argsort(-scores, kind="stable")[:TASTE_NEIGHBOURS].tolist()]

    def arrivals(self, count: int) -> dict[int, list[Newcomer]]:
        """Search index -> the newcomers that join the catalog before it."""
        found: dict[int, list[Newcomer]] = defaultdict(list)
        for newcomer in self.newcomers:
            found[int(newcomer.arrives * count)].append(newcomer)
        return dict(found)

    def arrive(self, newcomers: Sequence[Newcomer], vectors: Mapping[str, Sequence[float]]) -> None:
        """These newcomers are in the catalog now, with these vectors."""
        for newcomer in newcomers:
            self.arrived.add(newcomer.id)
            if newcomer.id in vectors:
                self.vectors[newcomer.id] = _unit(vectors[newcomer.id])

    def wanted(self, search: SimulatedSearch) -> frozenset[str]:
        """What the search wants: the intent's items, or for a vague intent the few nearest
        the user's taste among them and the arrived newcomers of its genre or mood."""
        intent, user = search.intent, search.user
        if intent.family != "vague" or user.center < 0:
            return intent.wanted
        key = (intent.text, user.user_id, len(self.arrived))
        if key not in self._wanted:
            joined = [
                n.id for n in self.newcomers if n.id in self.arrived and intent.pool in n.pools
            ]
            pool = [i for i in sorted(intent.wanted) + joined if i in self.vectors]
            if not pool:
                return intent.wanted
            center = self.vectors[self.centers[user.center]]
            scores = np.stack([self.vectors[i] for i in pool]) @ center
            keep = max(TASTE_MIN, int(TASTE_SHARE * len(pool)))
            best = np.argsort(-scores, kind="stable")[:keep]
            self._wanted[key] = frozenset(pool[i] for i in best.tolist())
        return self._wanted[key]

    def searches(self, count: int) -> list[SimulatedSearch]:
        """The stream every policy faces: the same for the same seed."""
        rng = random.Random(self.seed)
        drawn = rng.choices(range(len(self.intents)), weights=self.weights, k=count)
        arrived: list[Newcomer] = []
        arrivals = self.arrivals(count)
        near: dict[str, list[str]] = {}
        stream = []
        for index, intent_index in enumerate(drawn):
            arrived += arrivals.get(index, [])
            intent = self.intents[intent_index]
            user = rng.choice(self.users)
            if arrived and rng.random() < NEW_KNOWN_ITEM_SHARE:
                newcomer = rng.choice(arrived)
                title = str(newcomer.entity["title"])
                intent = Intent(title, "known_item", frozenset({newcomer.id}), True)
            elif intent.family == "known_item" and rng.random() < TASTE_PULL:
                if user.user_id not in near:
                    near[user.user_id] = self.near_taste(user)
                if near[user.user_id]:
                    track = rng.choice(near[user.user_id])
                    intent = Intent(self.titles[track], "known_item", frozenset({track}), True)
            text = intent.text
            if intent.typo_prone and rng.random() < self.typo_rate:
                text = misspell(text, rng)
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
            wanted = item in self.wanted(search)
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


def _unit(vector: Sequence[float]) -> npt.NDArray[np.float32]:
    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    return array / norm if norm > 0 else array


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
    vectors: Mapping[str, Sequence[float]] | None = None,
    new_entities: int = NEW_ENTITIES,
) -> World:
    """Intents from the catalog's own entities and attributes plus the judged topical queries.
    The same entities give the same world for the same seed, in whatever order they come.
    Vague intents and points of taste need the tracks' `vectors` (none: no vague intents)."""
    rng = random.Random(seed)
    entities = sorted(entities, key=lambda e: str(e["id"]))
    given: Mapping[Family, float] = mix or {
        "known_item": 0.4,
        "topical": 0.15,
        "attribute": 0.15,
        "ambiguous": 0.05,
        "related": 0.1,
        "vague": 0.15,
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

    intents["related"] = _related(entities, tracks, int(pool * mix["related"]), rng)
    units = {k: _unit(v) for k, v in (vectors or {}).items()}
    intents["vague"] = _vague(tracks, units)
    newcomers = _newcomers(tracks, new_entities, seed) if units else []

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
    weights = [w / sum(weights) for w in weights]  # the mix among the families present
    centers = sorted(t["id"] for t in tracks if t["id"] in units)
    simulated_users = [
        SimulatedUser(
            f"user-{n}", rng.randrange(1 << 30), rng.randrange(len(centers)) if centers else -1
        )
        for n in range(users)
    ]
    return World(
        pool_intents,
        weights,
        simulated_users,
        typo_rate,
        seed,
        newcomers=newcomers,
        vectors=units,
        centers=centers,
        titles={str(t["id"]): str(t.get("title", "")) for t in tracks if t["id"] in units},
    )


def _related(
    entities: Sequence[Mapping[str, Any]],
    tracks: Sequence[Mapping[str, Any]],
    count: int,
    rng: random.Random,
) -> list[Intent]:
    """Artist names wanting one of the artist's most popular tracks, for popular artists."""
    by_artist: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for track in tracks:
        by_artist[str(track.get("artist", ""))].append(track)
    artists = sorted(
        (e for e in entities if e.get("entity_type") == "artist"),
        key=lambda e: -float(e.get("popularity") or 0.0),
    )
    found = []
    for artist in artists:
        theirs = by_artist.get(str(artist.get("title", "")), [])
        if len(theirs) >= RELATED_WANTED:
            top = sorted(theirs, key=lambda t: (-float(t.get("popularity") or 0.0), str(t["id"])))
            wanted = frozenset(str(t["id"]) for t in top[:RELATED_WANTED])
            found.append(Intent(str(artist["title"]), "related", wanted, True))
        if len(found) >= 3 * count:
            break
    return rng.sample(found, k=min(len(found), count))


def _vague(
    tracks: Sequence[Mapping[str, Any]], vectors: Mapping[str, npt.NDArray[np.float32]]
) -> list[Intent]:
    """A genre or a mood on its own, over every track of it that has a vector."""
    pools: dict[str, set[str]] = defaultdict(set)
    for track in tracks:
        if str(track["id"]) not in vectors:
            continue
        for value in [*(track.get("genre") or ()), *(track.get("mood") or ())]:
            pools[str(value)].add(str(track["id"]))
    return [
        Intent(value, "vague", frozenset(ids), pool=value)
        for value, ids in sorted(pools.items())
        if len(ids) >= 4 * TASTE_MIN
    ]


def _newcomers(tracks: Sequence[Mapping[str, Any]], count: int, seed: int) -> list[Newcomer]:
    """New tracks: titles made of words of other titles, the artist, genres and moods of an
    existing track, no popularity yet; arriving in NEW_BATCHES batches."""
    rng = random.Random(f"newcomers/{seed}")
    words = sorted(
        {w for t in tracks for w in str(t.get("title", "")).split() if w.isalpha() and len(w) > 3}
    )
    if not tracks or len(words) < 2:
        return []
    found = []
    for n in range(count):
        model = rng.choice(tracks)
        title = " ".join(rng.sample(words, k=2)).title()
        entity: dict[str, Any] = {
            "id": f"track:sim-new-{seed}-{n}",
            "entity_type": "track",
            "title": title,
            "artist": model.get("artist") or "Unknown",
            "genre": list(model.get("genre") or ()),
            "mood": list(model.get("mood") or ()),
            "era": list(model.get("era") or ()),
            "popularity": NEW_POPULARITY,
        }
        pools = tuple(entity["genre"] + entity["mood"])
        found.append(Newcomer(entity, 0.8 * (n % NEW_BATCHES + 1) / NEW_BATCHES, pools))
    return found


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
