from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ltrr_os.catalog import build_music_catalog
from ltrr_os.config import load_schema
from ltrr_os.understanding import (
    Lexicon,
    Reading,
    SlotMatch,
    UnderstoodQuery,
    build_lexicon,
    understand,
)

MUSIC_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "music"

LEXICON = Lexicon(
    slot_values={
        "artist": {
            "Taylor Swift": 0.97,
            "James Taylor": 0.5,
            "Queen": 0.95,
            "Ivy Queen": 0.6,
            "Rick": 0.3,
            "Rick Astley": 0.6,
            "The Beatles": 0.9,
        },
        "genre": {"rock": 0.2, "hard rock": 0.02, "pop": 0.15, "hip hop": 0.1, "love songs": 0.05},
        "era": {"1970s": 0.05, "1980s": 0.1, "1990s": 0.1, "2000s": 0.1},
        "mood": {"chill": 0.05, "acoustic": 0.03, "happy": 0.1},
    },
    entity_types=["track", "artist", "album"],
    vocabulary={
        "a": 900,
        "astley": 3,
        "beatles": 25,
        "bohemian": 2,
        "by": 200,
        "day": 60,
        "for": 300,
        "hard": 30,
        "james": 10,
        "love": 200,
        "queen": 40,
        "rainy": 5,
        "rhapsody": 2,
        "rick": 8,
        "rock": 100,
        "songs": 80,
        "story": 30,
        "swift": 15,
        "taylor": 20,
        "the": 1000,
    },
    name_slots=["artist"],
)


def slots(reading: Reading) -> list[tuple[str, str, int, int]]:
    return [(s.slot, s.value, s.start, s.end) for s in reading.slots]


def top(text: str, lexicon: Lexicon = LEXICON) -> Reading:
    return understand(text, lexicon).readings[0]


def assert_valid(query: UnderstoodQuery) -> None:
    """The invariants every result keeps, whatever the input."""
    assert query.readings
    assert math.isclose(sum(r.likelihood for r in query.readings), 1.0, abs_tol=1e-9)
    likelihoods = [r.likelihood for r in query.readings]
    assert likelihoods == sorted(likelihoods, reverse=True)
    assert len(query.readings) <= 5
    assert any(not r.slots for r in query.readings), "the plain reading is always kept"
    assert query.normalized == " ".join(query.tokens)
    for reading in query.readings:
        covered: set[int] = set()
        for slot in reading.slots:
            assert 0 <= slot.start < slot.end <= len(query.tokens)
            assert 0.0 < slot.confidence <= 1.0
            assert slot.matched == " ".join(query.tokens[slot.start : slot.end])
            span = set(range(slot.start, slot.end))
            assert not covered & span, "spans of one reading never overlap"
            covered |= span
        left = [w for i, w in enumerate(query.tokens) if i not in covered]
        assert reading.residual == " ".join(left)
    features = query.features
    assert features.length_chars == len(query.text)
    assert 0.0 <= features.typo_likelihood <= 1.0
    scores = features.query_type_scores
    assert set(scores) == {"known_item", "topical", "attribute"}
    assert math.isclose(sum(scores.values()), 1.0, abs_tol=1e-9)
    assert features.query_type == max(scores, key=lambda t: scores[t])
    assert len(query.memory_keys) <= 3
    assert len(set(query.memory_keys)) == len(query.memory_keys)
    assert all(query.memory_keys)


# --- slot tagging --------------------------------------------------------------------------------


def test_a_typo_of_part_of_a_name_finds_the_artist_and_leaves_the_title() -> None:
    query = understand("tayler love", LEXICON)
    best = query.readings[0]
    assert slots(best) == [("artist", "Taylor Swift", 0, 1)]
    assert best.slots[0].fuzzy
    assert best.slots[0].matched == "tayler"
    assert best.residual == "love"
    assert query.memory_keys[:2] == ["tayler love", "taylor swift love"]


def test_era_and_genre_cover_an_attribute_query() -> None:
    query = understand("80s hard rock", LEXICON)
    assert slots(query.readings[0]) == [("era", "1980s", 0, 1), ("genre", "hard rock", 1, 3)]
    assert query.readings[0].residual == ""
    assert query.memory_keys[:2] == ["80s hard rock", "1980s hard rock"]


@pytest.mark.parametrize(
    ("text", "era"),
    [
        ("80s", "1980s"),
        ("'80s", "1980s"),
        ("80's", "1980s"),
        ("\u201980s", "1980s"),
        ("eighties", "1980s"),
        ("1980s", "1980s"),
        ("1980", "1980s"),
        ("1987", "1980s"),
        ("90s", "1990s"),
        ("nineties", "1990s"),
        ("1995", "1990s"),
        ("seventies", "1970s"),
        ("00s", "2000s"),
        ("noughties", "2000s"),
        ("2003", "2000s"),
    ],
)
def test_era_aliases_and_years_map_to_the_decade(text: str, era: str) -> None:
    assert slots(top(text)) == [("era", era, 0, 1)]


def test_a_year_of_a_decade_the_catalog_lacks_is_plain_text() -> None:
    assert not top("1955").slots


def test_two_moods() -> None:
    assert slots(top("chill acoustic")) == [("mood", "chill", 0, 1), ("mood", "acoustic", 1, 2)]


def test_entity_type_word_and_artist() -> None:
    best = top("songs by queen")
    assert slots(best) == [("entity_type", "track", 0, 1), ("artist", "Queen", 2, 3)]
    assert best.residual == "by"


@pytest.mark.parametrize(
    ("word", "entity_type"),
    [
        ("song", "track"),
        ("songs", "track"),
        ("track", "track"),
        ("tracks", "track"),
        ("album", "album"),
        ("albums", "album"),
        ("record", "album"),
        ("lp", "album"),
        ("artist", "artist"),
        ("artists", "artist"),
        ("band", "artist"),
        ("bands", "artist"),
        ("singer", "artist"),
    ],
)
def test_entity_type_words(word: str, entity_type: str) -> None:
    assert slots(top(f"{word} xyz")) == [("entity_type", entity_type, 0, 1)]


def test_entity_type_words_only_for_types_the_schema_has() -> None:
    documents = Lexicon(
        slot_values={"author": {"Ada Lovelace": 0.5}},
        entity_types=["document"],
        vocabulary={"songs": 3},
        name_slots=["author"],
    )
    assert not any(r.slots for r in understand("songs", documents).readings)
    assert slots(top("documents by lovelace", documents)) == [
        ("entity_type", "document", 0, 1),
        ("author", "Ada Lovelace", 2, 3),
    ]


def test_ambiguity_is_kept() -> None:
    love = understand("love", LEXICON)
    assert_valid(love)
    assert [] in [slots(r) for r in love.readings]
    assert [("genre", "love songs", 0, 1)] in [slots(r) for r in love.readings]

    queen = understand("queen", LEXICON)
    readings = [slots(r) for r in queen.readings]
    assert readings[0] == [("artist", "Queen", 0, 1)]
    assert [] in readings
    assert queen.readings[0].likelihood < 1.0


def test_a_full_name_shadows_names_that_merely_contain_the_word() -> None:
    readings = [slots(r) for r in understand("queen", LEXICON).readings]
    assert [("artist", "Ivy Queen", 0, 1)] not in readings
    assert slots(top("ivy queen")) == [("artist", "Ivy Queen", 0, 2)]


def test_longest_match_wins() -> None:
    assert slots(top("taylor swift love story")) == [("artist", "Taylor Swift", 0, 2)]
    assert slots(top("the beatles")) == [("artist", "The Beatles", 0, 2)]
    assert slots(top("beatles")) == [("artist", "The Beatles", 0, 1)]


def test_a_reading_names_at_most_one_artist() -> None:
    for reading in understand("queen taylor swift", LEXICON).readings:
        assert len([s for s in reading.slots if s.slot == "artist"]) <= 1


def test_fuzzy_matching_needs_high_similarity_and_four_characters() -> None:
    for reading in understand("rock", LEXICON).readings:
        assert ("artist", "Rick") not in [(s.slot, s.value) for s in reading.slots]
    assert slots(top("rock")) == [("genre", "rock", 0, 1)]
    assert slots(top("rick")) == [("artist", "Rick", 0, 1)]
    assert not any(r.slots for r in understand("pip", LEXICON).readings)  # pop, 3 letters
    assert not any(r.slots for r in understand("xqzvw", LEXICON).readings)


def test_a_typo_costs_confidence() -> None:
    exact = top("taylor swift").slots[0]
    typo = top("taylr swift").slots[0]
    assert (typo.value, typo.fuzzy, exact.fuzzy) == ("Taylor Swift", True, False)
    assert typo.confidence < exact.confidence
    assert slots(top("quen")) == [("artist", "Queen", 0, 1)]


# --- features ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "query_type"),
    [
        ("80s hard rock", "attribute"),
        ("chill acoustic", "attribute"),
        ("taylor swift love story", "known_item"),
        ("bohemian rhapsody", "known_item"),
        ("songs for a rainy day", "topical"),
        ("what similarity laws must be obeyed when constructing aeroelastic models", "topical"),
    ],
)
def test_query_type(text: str, query_type: str) -> None:
    assert understand(text, LEXICON).features.query_type == query_type


@pytest.mark.parametrize(
    ("text", "script", "language"),
    [
        ("songs for a rainy day", "latin", "en"),
        ("canciones de amor para bailar", "latin", "es"),
        ("músicas para dançar com amigos", "latin", "pt"),
        ("chansons d'amour pour danser", "latin", "fr"),
        ("lieder für die nacht", "latin", "de"),
        ("canzoni d'amore per la notte", "latin", "it"),
        ("taylor swift", "latin", "und"),
        ("привет мир", "cyrillic", "ru"),
        ("їжак", "cyrillic", "uk"),
        ("\u03b3\u03b5\u03b9\u03b1 \u03c3\u03bf\u03c5", "greek", "el"),  # "geia sou"
        ("مرحبا", "arabic", "ar"),
        ("שלום", "hebrew", "he"),
        ("紅蓮華", "cjk", "zh"),
        ("こんにちは", "cjk", "ja"),
        ("안녕하세요", "hangul", "ko"),
        ("नमस्ते", "devanagari", "hi"),
        ("สวัสดี", "thai", "th"),
        ("hello привет", "mixed", "ru"),  # the main script speaks
        ("123 !!", "none", "und"),
        ("", "none", "und"),
    ],
)
def test_script_and_language(text: str, script: str, language: str) -> None:
    features = understand(text, LEXICON).features
    assert (features.script, features.language) == (script, language)


def test_words_of_other_scripts_are_kept_as_tokens() -> None:
    query = understand("Beyoncé привет 紅蓮華", LEXICON)
    assert query.tokens == ["beyonce", "привет", "紅蓮華"]
    assert query.memory_keys == ["beyonce"]


@pytest.mark.parametrize(
    ("text", "numerals", "year"),
    [("hits of 1985", True, True), ("1990s rock", True, True), ("top 40", True, False),
     ("80s", True, False), ("rock", False, False)],
)  # fmt: skip
def test_numerals_and_years(text: str, numerals: bool, year: bool) -> None:
    features = understand(text, LEXICON).features
    assert (features.has_numerals, features.has_year) == (numerals, year)


def test_typo_likelihood_weighs_unknown_words_with_a_near_neighbour_by_length() -> None:
    assert understand("tayler love", LEXICON).features.typo_likelihood == pytest.approx(6 / 10)
    assert understand("taylor swift", LEXICON).features.typo_likelihood == 0.0
    assert understand("xqzvw", LEXICON).features.typo_likelihood == 0.0  # unknown, no neighbour


def test_lengths() -> None:
    features = understand("  Songs   by Queen! ", LEXICON).features
    assert (features.length_chars, features.length_tokens) == (20, 3)


# --- robustness ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", "\t\n ", "!!!", "🎸🔥"])
def test_empty_queries_have_one_empty_reading(text: str) -> None:
    query = understand(text, LEXICON)
    assert query.tokens == []
    assert query.readings == [Reading(slots=[], residual="", likelihood=1.0)]
    assert query.features.script == "none"
    assert query.features.query_type == "topical"
    assert query.memory_keys == []
    assert_valid(query)


@pytest.mark.parametrize(
    "text",
    [
        "\x00\x07rock\x1b[0m\u200b",
        "🎸🔥 rock 🤘 80s",
        "rock привет 紅蓮華 مرحبا",
        "{{x}} {{> partial}} {{#each}}",
        "\"quoted\" 'single' \u201ccurly\u201d `back`",
        "\ud800 lone surrogate",
        "a" * 10_000,
        "love rock " * 1_000,
        "紅蓮華" * 3_400,
        "80s hard rock " * 800,
    ],
)
def test_any_text_gives_a_valid_result_quickly(text: str) -> None:
    started = time.perf_counter()
    query = understand(text, LEXICON)
    assert time.perf_counter() - started < 0.5
    assert_valid(query)
    assert all(s.end <= 64 for r in query.readings for s in r.slots), "only 64 words are tagged"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=30),
            st.sampled_from(["80s", "hard", "rock", "tayler", "queen", "songs", "the", "beatles"]),
        ),
        max_size=12,
    ).map(" ".join)
)
def test_any_text_keeps_the_invariants(text: str) -> None:
    assert_valid(understand(text, LEXICON))


# --- determinism and the lexicon -----------------------------------------------------------------


def test_the_same_input_gives_the_same_output() -> None:
    copy = Lexicon.model_validate_json(LEXICON.model_dump_json())
    for text in ["tayler love", "80s hard rock", "love", "queen taylor swift"]:
        assert understand(text, LEXICON) == understand(text, LEXICON) == understand(text, copy)


def test_output_does_not_depend_on_string_hashing() -> None:
    code = (
        "import sys, json\n"
        "from tests.unit.test_understanding import LEXICON\n"
        "from ltrr_os.understanding import understand\n"
        "queries = ['tayler love', 'love', 'queen', '80s hard rock', 'rick astly taylr', 'quen']\n"
        "print(json.dumps([understand(q, LEXICON).model_dump() for q in queries]))\n"
    )
    root = Path(__file__).resolve().parents[2]
    outputs = [
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    ]
    assert json.loads(outputs[0]) == json.loads(outputs[1])


def test_build_lexicon_priors_and_vocabulary() -> None:
    entities: list[dict[str, Any]] = [
        {"entity_type": "track", "title": "Love Story", "artist": "Taylor Swift",
         "genre": ["pop", "country"], "era": ["2000s"], "popularity": 0.9},
        {"entity_type": "track", "title": "Shake It Off", "artist": "Taylor Swift",
         "genre": ["pop"], "era": "2010s", "popularity": 0.97},
        {"entity_type": "album", "title": "Love", "artist": "Obscure Band", "genre": "pop"},
        {"entity_type": "artist", "title": "Nobody", "artist": "", "genre": None,
         "popularity": "not a number"},
    ]  # fmt: skip
    lexicon = build_lexicon(entities, load_schema("music"))
    assert lexicon.entity_types == ["track", "artist", "album"]
    assert lexicon.name_slots == ["artist"]
    assert lexicon.slot_values["genre"] == {"country": 0.25, "pop": 0.75}
    assert lexicon.slot_values["era"] == {"2000s": 0.25, "2010s": 0.25}
    assert lexicon.slot_values["mood"] == {}
    assert lexicon.slot_values["artist"] == {"Obscure Band": 0.001, "Taylor Swift": 0.97}
    assert lexicon.vocabulary["love"] == 2  # entities, not occurrences
    assert lexicon.vocabulary["taylor"] == 2
    assert lexicon.vocabulary["nobody"] == 1
    assert "pop" not in lexicon.vocabulary  # keyword values are not text


def test_build_lexicon_for_documents() -> None:
    entities = [{"title": "Aeroelastic models", "body": "Similarity laws.", "author": "Ada"}]
    lexicon = build_lexicon(entities, load_schema("documents"))
    assert lexicon.slot_values == {"author": {"Ada": 0.001}}
    assert lexicon.name_slots == ["author"]
    assert lexicon.vocabulary == {"ada": 1, "aeroelastic": 1, "laws": 1, "models": 1,
                                  "similarity": 1}  # fmt: skip


def test_slot_match_reports_the_matched_words() -> None:
    match = top("Tayler LOVE").slots[0]
    assert match == SlotMatch(
        slot="artist",
        value="Taylor Swift",
        confidence=match.confidence,
        start=0,
        end=1,
        matched="tayler",
        fuzzy=True,
    )


# --- the real music catalog ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def music() -> Lexicon:
    return build_lexicon(build_music_catalog(MUSIC_DATA).entities, load_schema("music"))


def test_real_lexicon_size(music: Lexicon) -> None:
    sizes = {slot: len(values) for slot, values in music.slot_values.items()}
    assert sizes["artist"] > 8_000
    assert sizes["genre"] >= 15
    assert {"1980s", "1990s", "2010s"} <= set(music.slot_values["era"])
    assert set(music.slot_values["mood"]) == {
        "happy", "energetic", "chill", "calm", "intense", "dark", "melancholic", "sad",
        "acoustic", "danceable",
    }  # fmt: skip
    assert len(music.vocabulary) > 10_000


def test_real_tayler_love(music: Lexicon) -> None:
    best = understand("tayler love", music).readings[0]
    assert slots(best) == [("artist", "Taylor Swift", 0, 1)]
    assert best.slots[0].fuzzy
    assert best.residual == "love"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("80s rock", [("era", "1980s", 0, 1), ("genre", "rock", 1, 2)]),
        ("eighties hip hop", [("era", "1980s", 0, 1), ("genre", "hip hop", 1, 3)]),
        ("chill acoustic", [("mood", "chill", 0, 1), ("mood", "acoustic", 1, 2)]),
        ("songs by queen", [("entity_type", "track", 0, 1), ("artist", "Queen", 2, 3)]),
        ("beyonse", [("artist", "Beyoncé", 0, 1)]),
        ("rock", [("genre", "rock", 0, 1)]),
    ],
)
def test_real_readings(
    music: Lexicon, text: str, expected: list[tuple[str, str, int, int]]
) -> None:
    assert slots(understand(text, music).readings[0]) == expected


@pytest.mark.parametrize(
    ("text", "query_type"),
    [
        ("80s rock", "attribute"),
        ("chill acoustic", "attribute"),
        ("taylor swift love story", "known_item"),
        ("bohemian rhapsody", "known_item"),
        ("songs for a rainy day", "topical"),
        ("what similarity laws must be obeyed when constructing aeroelastic models", "topical"),
    ],
)
def test_real_query_types(music: Lexicon, text: str, query_type: str) -> None:
    assert understand(text, music).features.query_type == query_type


def test_real_long_query_stays_fast(music: Lexicon) -> None:
    text = " ".join(list(music.slot_values["artist"])[:500])
    started = time.perf_counter()
    query = understand(text, music)
    assert time.perf_counter() - started < 0.5
    assert_valid(query)


@pytest.mark.parametrize(
    ("query", "language"),
    [("tayler love", "en"), ("80s rock", "en"), ("chill acoustic", "en"), ("amor y rock", "es")],
)
def test_short_english_queries_are_recognised_as_english(query: str, language: str) -> None:
    """Two or three words seldom hold a stopword; common content words are evidence too."""
    assert understand(query, LEXICON).features.language == language
