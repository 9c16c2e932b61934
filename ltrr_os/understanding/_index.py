"""The lexicon compiled for tagging: every phrase that can name a slot value (values, their
aliases, single words of longer names) and a deletion index that finds the catalog words one
or two typos away from a query word in a few dictionary look-ups."""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from rapidfuzz.distance import OSA

from ._language import STOPWORDS
from ._lexicon import Lexicon
from ._tokens import tokenize

ENTITY_TYPE_SLOT = "entity_type"
MAX_NGRAM = 4
MIN_FUZZY_CHARS = 4
MAX_FUZZY_CHARS = 32
MIN_SIMILARITY = 0.8
MAX_CORRECTIONS = 3
MAX_CANDIDATES_PER_SLOT = 3

# How surely a phrase names a value, before typos: a keyword value is a closed vocabulary, a
# name may also be an ordinary word, one word of a longer name may belong to several names.
EXACT = 1.0
ALIAS = 0.95
NAME = 0.9
ENTITY_WORD = 0.9
NAME_WITHOUT_THE = 0.85
YEAR = 0.8
PARTIAL = 0.8
"""Scaled by the word's share of the value's letters and by the value's relative prior."""
MIN_CONFIDENCE = 0.01
"""Weaker matches are not indexed: they could never beat leaving the word as plain text."""

ENTITY_WORDS = {
    "track": ("song", "songs", "track", "tracks"),
    "album": ("album", "albums", "record", "records", "lp", "lps"),
    "artist": ("artist", "artists", "band", "bands", "singer", "singers"),
}
_DECADE = re.compile(r"^(1[89]|20)(\d)0s$")
_DECADE_WORDS = {
    "192": ("twenties",),
    "193": ("thirties",),
    "194": ("forties",),
    "195": ("fifties",),
    "196": ("sixties",),
    "197": ("seventies",),
    "198": ("eighties",),
    "199": ("nineties",),
    "200": ("noughties", "aughts"),
}
_RESIDUAL_UNKNOWN = 0.1
_RESIDUAL_KNOWN = 0.2
_RESIDUAL_COMMON_DF = 1000


def max_edits(length: int) -> int:
    """Typos tolerated in a word: none below 4 characters, one up to 9, two from 10, none past
    MAX_FUZZY_CHARS (no name is that long, and the deletion variants would explode)."""
    if not MIN_FUZZY_CHARS <= length <= MAX_FUZZY_CHARS:
        return 0
    return 1 if length < 10 else 2


def _deletes(word: str, depth: int) -> set[str]:
    """`word` and every string made by deleting up to `depth` of its characters (two strings
    within `depth` edits share one of these, which is what the deletion index looks up)."""
    found = {word}
    frontier = {word}
    for _ in range(depth):
        frontier = {w[:i] + w[i + 1 :] for w in frontier for i in range(len(w))}
        found |= frontier
    return found


@dataclass(frozen=True, slots=True)
class Candidate:
    """A slot value a phrase may name: `confidence` says how surely (typos included), `weight`
    brings in the value's prior."""

    slot: str
    value: str
    confidence: float
    weight: float


class LexiconIndex:
    """Look-up structures derived from one Lexicon (see compiled())."""

    def __init__(self, lexicon: Lexicon) -> None:
        self.vocabulary = lexicon.vocabulary
        self.single_slots = frozenset([*lexicon.name_slots, ENTITY_TYPE_SLOT])
        self.name_slots = frozenset(lexicon.name_slots)
        self.log_max_df = math.log1p(max(lexicon.vocabulary.values(), default=1))
        self.phrases = _phrase_index(lexicon, self.specificity)
        words = sorted(set(self.vocabulary) | {w for p in self.phrases for w in p.split()})
        self.words = frozenset(words)
        self._deletes: dict[str, list[str]] = {}
        for word in words:
            for variant in _deletes(word, max_edits(len(word))):
                if (bucket := self._deletes.get(variant)) is None:
                    self._deletes[variant] = [word]
                else:
                    bucket.append(word)

    def corrections(self, word: str) -> tuple[str, ...]:
        """Catalog words within max_edits(len(word)) edits (a swap of neighbours counts as one)
        and at least MIN_SIMILARITY similar, closest and most common first; none for a known
        word or a number, since those are not typos."""
        depth = max_edits(len(word))
        if not depth or word in self.words or word.isdigit():
            return ()
        found = {
            target for variant in _deletes(word, depth) for target in self._deletes.get(variant, ())
        }
        scored = []
        for target in found:
            distance = OSA.distance(word, target, score_cutoff=depth)
            similarity = 1.0 - distance / max(len(word), len(target))
            if distance <= depth and similarity >= MIN_SIMILARITY:
                scored.append((distance, -self.vocabulary.get(target, 0), target))
        return tuple(target for _, _, target in sorted(scored)[:MAX_CORRECTIONS])

    def residual(self, word: str) -> float:
        """The chance that a word is plain text: higher the more catalog entities contain it;
        a word no entity contains is unlikely to find anything as text."""
        df = self.vocabulary.get(word, 0)
        if not df:
            return _RESIDUAL_UNKNOWN
        share = min(1.0, math.log1p(df) / math.log1p(_RESIDUAL_COMMON_DF))
        return _RESIDUAL_KNOWN * (1.0 + share)

    def specificity(self, word: str) -> float:
        """How rare a catalog word is, in [0, 1]: 0 for the commonest word or an unknown one."""
        df = self.vocabulary.get(word, 0)
        if not df or not self.log_max_df:
            return 0.0
        return 1.0 - math.log1p(df) / self.log_max_df


def _value_phrases(
    words: list[str], *, is_name: bool, popularity: float, specificity: Callable[[str], float]
) -> Iterator[tuple[str, float, bool]]:
    """(phrase, confidence, whether it is a fragment of the value) for each phrase naming it.

    A single word names a name less surely the more common it is in the catalog ("love" is
    mostly not the band Love). A fragment is one word of a longer value; it names the value the
    more surely the more of its letters it has and the more popular the value is relative to
    its slot's top value, so "taylor" is Taylor Swift before Jack Taylor."""

    def distinctive(word: str) -> float:
        return 0.5 + 0.5 * specificity(word)

    if len(words) == 1:
        yield words[0], NAME * distinctive(words[0]) if is_name else EXACT, False
    elif len(words) <= MAX_NGRAM:
        yield " ".join(words), NAME if is_name else EXACT, False
    rest = words[1:]
    if is_name and words[0] == "the" and 0 < len(rest) <= MAX_NGRAM and set(rest) - STOPWORDS:
        yield " ".join(rest), NAME_WITHOUT_THE, False
    if decade := _DECADE.match(" ".join(words)):
        century, digit = decade.groups()
        # "'80s" and "80's" are "80s" once tokenized; a year stands for its decade.
        yield f"{digit}0s", ALIAS, False
        yield from ((word, ALIAS, False) for word in _DECADE_WORDS.get(century + digit, ()))
        yield from ((f"{century}{digit}{year}", YEAR, False) for year in range(10))
    if len(words) > 1:
        letters = sum(len(word) for word in words)
        for word in dict.fromkeys(words):
            if len(word) >= MIN_FUZZY_CHARS and word not in STOPWORDS:
                share = len(word) / letters
                yield word, PARTIAL * popularity * share * distinctive(word), True


def _phrase_index(
    lexicon: Lexicon, specificity: Callable[[str], float]
) -> dict[str, tuple[Candidate, ...]]:
    """Phrase -> the values it may name, best first. A phrase that names a value in full is not
    also read as a fragment of a name or of another value of the same slot: "rock" is the genre,
    not Kid Rock nor hard rock, while "love" may be the band Love or the genre love songs."""
    full: dict[str, dict[tuple[str, str], Candidate]] = {}
    fragments: dict[str, dict[tuple[str, str], Candidate]] = {}

    def add(phrase: str, candidate: Candidate, *, fragment: bool) -> None:
        if candidate.confidence < MIN_CONFIDENCE:
            return
        found = (fragments if fragment else full).setdefault(phrase, {})
        known = found.get((candidate.slot, candidate.value))
        if known is None or candidate.confidence > known.confidence:
            found[(candidate.slot, candidate.value)] = candidate

    for slot, values in lexicon.slot_values.items():
        is_name = slot in lexicon.name_slots
        top = max(values.values(), default=1.0)
        for value, prior in values.items():
            weight = 0.5 + 0.5 * math.sqrt(prior / top)
            phrases = _value_phrases(
                tokenize(value), is_name=is_name, popularity=prior / top, specificity=specificity
            )
            for phrase, confidence, fragment in phrases:
                add(phrase, Candidate(slot, value, confidence, weight), fragment=fragment)
    for entity_type in lexicon.entity_types:
        words = " ".join(tokenize(entity_type))
        for word in dict.fromkeys([words, f"{words}s", *ENTITY_WORDS.get(entity_type, ())]):
            add(word, Candidate(ENTITY_TYPE_SLOT, entity_type, ENTITY_WORD, 1.0), fragment=False)
    index: dict[str, tuple[Candidate, ...]] = {}
    for phrase in sorted(full.keys() | fragments.keys()):
        named = full.get(phrase, {})
        shadowed = {slot for slot, _ in named} | (set(lexicon.name_slots) if named else set())
        parts = [c for c in fragments.get(phrase, {}).values() if c.slot not in shadowed]
        index[phrase] = best_per_slot([*named.values(), *parts])
    return index


def best_per_slot(candidates: Iterable[Candidate]) -> tuple[Candidate, ...]:
    """The MAX_CANDIDATES_PER_SLOT strongest candidates of each slot, strongest first: a popular
    word may be part of many names, and it must not crowd out the other slots."""
    ranked = sorted(candidates, key=lambda c: (-c.confidence * c.weight, c.slot, c.value))
    taken: dict[str, int] = {}
    best = []
    for candidate in ranked:
        if taken.get(candidate.slot, 0) < MAX_CANDIDATES_PER_SLOT:
            taken[candidate.slot] = taken.get(candidate.slot, 0) + 1
            best.append(candidate)
    return tuple(best)


_COMPILED: dict[int, LexiconIndex] = {}


def compiled(lexicon: Lexicon) -> LexiconIndex:
    """The index of a lexicon, built on first use and dropped with the lexicon."""
    index = _COMPILED.get(id(lexicon))
    if index is None:
        index = _COMPILED[id(lexicon)] = LexiconIndex(lexicon)
        weakref.finalize(lexicon, _COMPILED.pop, id(lexicon), None)
    return index
