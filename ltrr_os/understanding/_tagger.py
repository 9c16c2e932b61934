"""Slot tagging: word n-grams matched to slot values (exactly or through typo corrections),
then the most likely readings found by a beam search over segmentations of the query."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from rapidfuzz.distance import OSA

from ._index import MAX_NGRAM, MIN_SIMILARITY, Candidate, LexiconIndex, best_per_slot

BEAM = 12
MAX_READINGS = 5

Corrections = Mapping[str, tuple[str, ...]]
"""Query word -> the catalog words it may be a typo of."""


@dataclass(frozen=True, slots=True)
class Span:
    """Words [start, end) read as a candidate value."""

    start: int
    end: int
    candidate: Candidate
    fuzzy: bool

    @property
    def log_score(self) -> float:
        return math.log(self.candidate.confidence * self.candidate.weight)


@dataclass(frozen=True, slots=True)
class Segmentation:
    """A reading under construction: its spans and the log of its score."""

    log_score: float
    spans: tuple[Span, ...]

    def key(self) -> tuple[float, tuple[tuple[int, str, str], ...]]:
        """Best first; equal scores in a fixed order, so output never depends on hashing."""
        return -self.log_score, tuple(
            (s.start, s.candidate.slot, s.candidate.value) for s in self.spans
        )


def _span_candidates(
    words: Sequence[str], start: int, index: LexiconIndex, corrections: Corrections
) -> list[Span]:
    """Values the n-gram `words` may name, best first. A word the catalog does not know is
    replaced by its corrections; the n-gram then has to stay MIN_SIMILARITY similar to the
    phrase it became, and its confidence falls with the square of that similarity."""
    phrase = " ".join(words)
    end = start + len(words)
    if all(word in index.words for word in words):
        found = index.phrases.get(phrase, ())
        return [Span(start, end, candidate, fuzzy=False) for candidate in found]
    options: list[tuple[str, ...]] = []
    for word in words:
        fixes = (word,) if word in index.words else corrections.get(word, ())
        if not fixes:
            return []  # nothing in the lexicon contains this word or a near one
        options.append(fixes)
    best: dict[tuple[str, str], Candidate] = {}
    for combination in itertools.product(*options):
        corrected = " ".join(combination)
        similarity = OSA.normalized_similarity(phrase, corrected)
        if similarity < MIN_SIMILARITY:
            continue
        for candidate in index.phrases.get(corrected, ()):
            key = (candidate.slot, candidate.value)
            confidence = candidate.confidence * similarity**2
            if key not in best or confidence > best[key].confidence:
                best[key] = replace(candidate, confidence=confidence)
    return [Span(start, end, candidate, fuzzy=True) for candidate in best_per_slot(best.values())]


def find_spans(
    words: Sequence[str], index: LexiconIndex, corrections: Corrections
) -> list[list[Span]]:
    """For each position, the spans starting there (n-grams of 1 to MAX_NGRAM words)."""
    return [
        [
            span
            for end in range(start + 1, min(start + MAX_NGRAM, len(words)) + 1)
            for span in _span_candidates(words[start:end], start, index, corrections)
        ]
        for start in range(len(words))
    ]


def _compatible(spans: tuple[Span, ...], span: Span, single_slots: frozenset[str]) -> bool:
    """A value is named once per reading, and a name slot or the entity type at most once: a
    track has one primary artist, so two artists in one reading would find nothing."""
    slot, value = span.candidate.slot, span.candidate.value
    for other in spans:
        if other.candidate.slot == slot and (
            slot in single_slots or other.candidate.value == value
        ):
            return False
    return True


def segment(
    words: Sequence[str], spans_by_start: Sequence[Sequence[Span]], index: LexiconIndex
) -> list[Segmentation]:
    """The MAX_READINGS best readings, the plain one (no slots) always among them, each naming
    a different set of values (one naming the same values as a better one adds nothing).

    A reading scores the product of its slots' confidence x prior weight and, for every word
    left as text, the chance that the word is plain text (LexiconIndex.residual): covering
    words with a strong match beats leaving them, a weak match loses to common words."""
    residual = [math.log(index.residual(word)) for word in words]
    at: list[list[Segmentation]] = [[] for _ in range(len(words) + 1)]
    at[0].append(Segmentation(0.0, ()))
    for position, word_score in enumerate(residual):
        for path in sorted(at[position], key=Segmentation.key)[:BEAM]:
            at[position + 1].append(Segmentation(path.log_score + word_score, path.spans))
            for span in spans_by_start[position]:
                if _compatible(path.spans, span, index.single_slots):
                    extended = Segmentation(path.log_score + span.log_score, (*path.spans, span))
                    at[span.end].append(extended)
    best: list[Segmentation] = []
    seen: set[frozenset[tuple[str, str]]] = set()
    for path in sorted(at[-1], key=Segmentation.key):
        values = frozenset((s.candidate.slot, s.candidate.value) for s in path.spans)
        if values not in seen and len(best) < MAX_READINGS:
            seen.add(values)
            best.append(path)
    if all(path.spans for path in best):
        best = [*best[: MAX_READINGS - 1], Segmentation(sum(residual), ())]
        best.sort(key=Segmentation.key)
    return best


def likelihoods(paths: Sequence[Segmentation]) -> list[float]:
    """Scores normalised over the kept readings (so they sum to 1)."""
    top = max(path.log_score for path in paths)
    weights = [math.exp(path.log_score - top) for path in paths]
    total = sum(weights)
    return [w / total for w in weights]
