"""Script and language of a query, guessed offline: the script from Unicode character names,
the language of Latin text from small stopword lists (no model, nothing downloaded)."""

from __future__ import annotations

import unicodedata
from collections import Counter

_STOPWORDS_BY_LANGUAGE = {
    "en": "the a an and or of to in on for with by from at is are was were be it this that my me "
    "you your i we what how why when where who which must should can about like some",
    "es": "el la los las un una unos unas y o de del en con por para que mi mis tu su es son al "
    "lo como pero mas sin yo te se canciones musica amor",
    "pt": "o a os as um uma e de do da dos das em no na nos nas com por para que meu minha voce "
    "nao eu ao sem musicas cancoes amor",
    "fr": "le la les un une des et ou de du au aux en dans avec pour par que qui mon ma mes ton "
    "ta est sont je tu il elle nous vous pas sur chansons musique amour",
    "de": "der die das den dem des ein eine einen und oder von zu im mit fur auf ist sind ich du "
    "er sie wir ihr mein nicht aus bei lieder musik liebe",
    "it": "il lo la gli le un una uno e di del della dei in con per che mio mia tuo sono non io "
    "tu al alla da canzoni musica amore",
    "nl": "de het een en of van in op met voor door dat die ik jij je mijn niet is zijn liedjes "
    "muziek",
}
STOPWORDS = frozenset(w for words in _STOPWORDS_BY_LANGUAGE.values() for w in words.split())
"""Function words of the languages above: too common to name anything on their own."""

_COMMON_WORDS_BY_LANGUAGE = {
    "en": "love song songs music rock best hits greatest night day baby heart life time world "
    "dance party summer christmas happy sad chill girl boy man woman home never forever good "
    "bad new old little big sweet dream dreams fire light dark blue black white red gold "
    "wild free young live lonely crazy money road rain sun moon star stars sky angel devil "
    "soul blues country classic top playlist workout sleep study morning evening",
}
"""Frequent content words, only as evidence of a language: stopwords are too few in queries
of two or three words ('tayler love', '80s rock')."""

_LANGUAGES_OF: dict[str, tuple[str, ...]] = {}
for _language, _words in (
    *_STOPWORDS_BY_LANGUAGE.items(),
    *_COMMON_WORDS_BY_LANGUAGE.items(),
):
    for _word in dict.fromkeys(_words.split()):
        _LANGUAGES_OF[_word] = (*_LANGUAGES_OF.get(_word, ()), _language)

# Letters that (mostly) belong to one language, as extra evidence for Latin text.
_LETTER_HINTS = {
    "ñ": ("es",),
    "¿": ("es",),
    "¡": ("es",),
    "ã": ("pt",),
    "õ": ("pt",),
    "ç": ("fr", "pt"),
    "ß": ("de",),
    "ä": ("de",),
    "ö": ("de",),
    "ü": ("de",),
    "œ": ("fr",),
    "è": ("fr", "it"),
    "ò": ("it",),
    "ì": ("it",),
}

_SCRIPT_OF_NAME = {
    "LATIN": "latin",
    "FULLWIDTH": "latin",
    "CYRILLIC": "cyrillic",
    "GREEK": "greek",
    "ARABIC": "arabic",
    "HEBREW": "hebrew",
    "CJK": "cjk",
    "HIRAGANA": "kana",
    "KATAKANA": "kana",
    "HANGUL": "hangul",
    "DEVANAGARI": "devanagari",
    "THAI": "thai",
}
_LANGUAGE_OF_SCRIPT = {
    "greek": "el",
    "hebrew": "he",
    "hangul": "ko",
    "devanagari": "hi",
    "thai": "th",
}
MIXED_BELOW = 0.8
"""A text is of mixed script when its main script has less than this share of its letters."""


def script_counts(text: str) -> Counter[str]:
    """Letters per script ("kana" for Japanese kana, "other" for scripts not listed)."""
    counts: Counter[str] = Counter()
    for ch in text:
        if not ch.isalpha():
            continue
        if ch.isascii():
            counts["latin"] += 1
        else:
            counts[_SCRIPT_OF_NAME.get(unicodedata.name(ch, "").split(" ", 1)[0], "other")] += 1
    return counts


def _main_script(counts: Counter[str]) -> tuple[str, float]:
    """The script with most letters (kana counted as cjk) and its share of the letters."""
    merged = Counter(counts)
    merged["cjk"] += merged.pop("kana", 0)
    main, count = max(sorted(merged.items()), key=lambda item: item[1])
    return main, count / sum(merged.values())


def script_of(counts: Counter[str]) -> str:
    """The main script; "none" without letters, "mixed" when no script has MIXED_BELOW of them."""
    if not counts:
        return "none"
    main, share = _main_script(counts)
    return main if share >= MIXED_BELOW else "mixed"


def guess_language(text: str, words: list[str], counts: Counter[str]) -> str:
    """ISO 639-1 code, or "und" when the evidence is missing or tied.

    The main script mostly settles it (kana tell Japanese from Chinese, a letter or two tell
    Ukrainian from Russian and Persian from Arabic); Latin text votes with its stopwords, a word
    shared by k languages giving each 1/k, and with letters such as ñ or ß."""
    if not counts:
        return "und"
    main, _ = _main_script(counts)
    if main in _LANGUAGE_OF_SCRIPT:
        return _LANGUAGE_OF_SCRIPT[main]
    if main == "cjk":
        return "ja" if counts["kana"] else "zh"
    if main == "cyrillic":
        return "uk" if any(ch in "іїєґІЇЄҐ" for ch in text) else "ru"
    if main == "arabic":
        return "fa" if any(ch in "پچژگ" for ch in text) else "ar"
    if main != "latin":
        return "und"
    votes: dict[str, float] = {}
    for word in words:
        languages = _LANGUAGES_OF.get(word, ())
        for language in languages:
            votes[language] = votes.get(language, 0.0) + 1.0 / len(languages)
    for ch in text.lower():
        for language in _LETTER_HINTS.get(ch, ()):
            votes[language] = votes.get(language, 0.0) + 1.0
    ranked = sorted(votes.items(), key=lambda item: -item[1])
    if not ranked or (len(ranked) > 1 and ranked[0][1] - ranked[1][1] < 1e-9):
        return "und"
    return ranked[0][0]
