"""The music catalog built from the real data in data/music/, and its editorial judged queries.

Rules (the catalog's user-facing contract):

- Entities are tracks, artists and albums. Tracks come from editorial_tracks.csv,
  top_hits_2000_2019.csv, spotify_tracks_by_genre.csv and classic_rock_song_list.csv, read in
  that priority order. editorial_playlists.csv is read only by `editorial_judgments`: every
  playlist track is also in editorial_tracks.csv, and keeping the playlists out of the build
  means no attribute can leak the judgments into the catalog.
- One song is one track, whichever files list it. Its key is the primary artist plus the title
  without featured-artist credits ("(feat. X)", "[ft. X]", "(with X)", " - feat. X", a bare
  " feat. X") and without a trailing release suffix made only of release words ("- Remastered
  2011", "(2009 Remaster)", "- Radio Edit", "- Single Version", "- Mono / Remastered"). Other
  suffixes ("- Live", "(Remix)", "- Acoustic") name other recordings and stay. Track id =
  entity_id("track", artist, title), artist id = entity_id("artist", name), album id =
  entity_id("album", artist, album title), where the artist of a compilation (an album title
  carrying tracks of three artists or more) is "Various Artists": one album, not one per
  artist; album titles lose edition suffixes ("(Deluxe
  Edition)", "(Remastered)", "(40th Anniversary Edition)") and featured-artist credits.
- Keys compare normalised text: "&" reads "and", accents, case and punctuation are ignored, a
  curly apostrophe is a straight one. A name with no Latin letters or digits (紅蓮華) is keyed
  by a short hash of its text, since ids are ASCII.
- Primary artist: the first of the ';'-separated artists (spotify_tracks_by_genre.csv), without
  " feat. X", " featuring X" or " ft. X". '&', ',' and '+' do not split: "Simon & Garfunkel" is
  one artist. Only primary artists become artist entities.
- Display title and artist come from the first file in priority order, cleaned like the key.
  A track's album is the one its first album-carrying file gives (within a file, the album of
  its most popular row, so an original release wins over a compilation).
- Popularity: each file with a signal (spotify and top-hits popularity, classic-rock PlayCount)
  is turned into percentile ranks in [0, 1], ties sharing their mean rank; a song takes the max
  over its files. A song with no measurement (in this data: known only from the editorial
  files) gets 0.5: an editor picking it is evidence of interest, but not a measurement, so it
  sits at the median. Artists and albums take the max over their tracks.
- Attributes come only from the track files: genre (spotify track_genre, top-hits genres split
  on ',' and '/', "set()" = none, classic rock = "classic rock" + "rock"; lowercase, '-' read
  as a space), year (top-hits year, classic-rock release year; the earliest when files
  disagree), era (its decade, "1980s"), explicit ("true" if any file says so), and the mean of
  energy, valence, danceability, acousticness and tempo.
- Mood, from the mean audio features: valence >= 0.5 and energy >= 0.6 -> happy, energetic;
  valence >= 0.5, energy < 0.6 -> chill; valence < 0.5, energy >= 0.6 -> intense (and dark
  if valence < 0.25); valence < 0.5, energy < 0.6 -> melancholic (and sad if valence < 0.25);
  energy < 0.3 -> calm; acousticness >= 0.6 -> acoustic; danceability >= 0.7 -> danceable.
- Artists and albums carry their tracks' 8 most frequent genres, the union of their eras and
  the rows that name them as sources. Fields with no value are omitted.
- A row without title or artist, with a number that does not parse or is out of range (audio
  features outside [0, 1], tempo outside [0, 1000], a year outside 1900-2100, a negative
  popularity) or an explicit flag other than True/False is a Rejection with file and line; a
  blank value is unknown. A song repeated within one file is one source row: the repeats only
  add their genres, albums and a higher popularity (spotify lists a song once per genre and
  release).
- Determinism: the same files give the same entities in the same order (tracks, then artists,
  then albums, each in order of first appearance).
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import LtrrError
from .._text import entity_id, fold, normalize, slug
from ._readers import Rejection, SourceRow, read_csv

_PLAYLISTS_FILE = "editorial_playlists.csv"
NO_MEASUREMENT_POPULARITY = 0.5
COMPILATION_ARTISTS = 3
"""An album title with tracks of this many artists or more is a compilation: one album."""
VARIOUS_ARTISTS = "Various Artists"
MAX_GROUP_GENRES = 8
_UNIT_FEATURES = ("energy", "valence", "danceability", "acousticness")

_FEATURING = r"(?:feat\.?|ft\.|featuring)"
_CREDIT = re.compile(
    # "(feat. X)", "[ft. X]" and Spotify's lowercase "(with X)" anywhere in a title.
    rf"\s*[(\[](?:(?i:{_FEATURING})|with)\s[^)\]]*[)\]]"
    # " - feat. X" to the end, and a bare " feat. X" up to the next bracket.
    rf"|\s+-\s+(?i:{_FEATURING})\s.*$"
    r"|\s+(?i:feat\.|ft\.|featuring)\s[^(\[]*"
)
_ARTIST_CREDIT = re.compile(rf"\s+(?i:{_FEATURING})\s.*$")
_ASCII_WORD = re.compile(r"[0-9A-Za-z]")
_SEPARATOR = r"[\s/&,-]+"
_TRACK_WORD = (
    r"(?:remaster(?:ed)?|digital(?:ly)?|mono|stereo|radio|single|album|edit|version|bonus|track"
    r"|\d{4})"
)
_ALBUM_WORD = (
    r"(?:remaster(?:ed)?|digital(?:ly)?|deluxe|super|expanded|special|bonus|tracks?|legacy"
    r"|anniversary|\d+(?:st|nd|rd|th)|collector'?s|reissue|explicit|international|u\.?s\.?"
    r"|release|edition|version|and|mono|stereo|\d{4})"
)


def _suffix(word: str) -> re.Pattern[str]:
    """A trailing ' - ...', '(...)' or '[...]' made only of `word`s, at least one not a number."""
    body = rf"(?=[^)\]]*[a-z]){word}(?:{_SEPARATOR}{word})*"
    return re.compile(rf"\s+-\s+{body}\s*$|\s*[(\[]{body}[)\]]\s*$", re.IGNORECASE)


_TRACK_SUFFIX = _suffix(_TRACK_WORD)
_ALBUM_SUFFIX = _suffix(_ALBUM_WORD)


@dataclass(frozen=True, slots=True)
class _Source:
    """Which columns of one track file hold what."""

    file: str
    title: str
    artist: str
    album: str | None = None
    popularity: str | None = None
    year: str | None = None
    explicit: str | None = None
    audio_features: bool = False
    genre: str | None = None
    fixed_genres: tuple[str, ...] = ()

    @property
    def columns(self) -> list[str]:
        named = [self.title, self.artist, self.album, self.popularity, self.year, self.explicit]
        features = [*_UNIT_FEATURES, "tempo"] if self.audio_features else []
        return [c for c in [*named, self.genre, *features] if c]


_SOURCES = (
    _Source("editorial_tracks.csv", title="track", artist="artist", album="album"),
    _Source(
        "top_hits_2000_2019.csv",
        title="song",
        artist="artist",
        popularity="popularity",
        year="year",
        explicit="explicit",
        audio_features=True,
        genre="genre",
    ),
    _Source(
        "spotify_tracks_by_genre.csv",
        title="track_name",
        artist="artists",
        album="album_name",
        popularity="popularity",
        explicit="explicit",
        audio_features=True,
        genre="track_genre",
    ),
    _Source(
        "classic_rock_song_list.csv",
        title="Song Clean",
        artist="ARTIST CLEAN",
        popularity="PlayCount",
        year="Release Year",
        fixed_genres=("classic rock", "rock"),
    ),
)


@dataclass
class MusicCatalog:
    """Catalog entities (schema-field dicts) and the rows that could not be used."""

    entities: list[dict[str, Any]]
    rejections: list[Rejection]


@dataclass(slots=True)
class _Row:
    """One song as one file reports it, its repeats in that file folded in."""

    origins: list[str]
    title: str
    artist: str
    album: str | None
    album_origins: dict[str, list[str]]
    genres: list[str]
    popularity: float | None
    year: int | None
    explicit: bool | None
    features: dict[str, float]
    rank: float | None = None


@dataclass(slots=True)
class _Group:
    """An artist or album being assembled from its tracks."""

    title: str
    artist: str
    tracks: list[dict[str, Any]] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)


class _BadRowError(Exception):
    """A row that cannot be used; the message is the Rejection reason."""


def _squash(text: str) -> str:
    return " ".join(text.split())


def _id_part(name: str) -> str:
    """What entity_id should key `name` on: the name with straight apostrophes, or a hash of it
    when normalisation would leave nothing (紅蓮華)."""
    text = name.replace("\u2019", "'").replace("\u2018", "'")
    if _ASCII_WORD.search(text) or normalize(text):
        return text
    return "h" + hashlib.sha1(_squash(fold(text)).encode()).hexdigest()[:12]


def _clean(text: str, suffix: re.Pattern[str]) -> str:
    """`text` without featured-artist credits and trailing `suffix`es (unchanged if that would
    leave nothing)."""
    cleaned = _squash(_CREDIT.sub(" ", text))
    while (stripped := suffix.sub("", cleaned)) != cleaned:
        cleaned = stripped
    return cleaned or _squash(text)


def _clean_title(title: str) -> str:
    """A track title as displayed and keyed: no featured artists, no remaster/edit suffix."""
    return _clean(title, _TRACK_SUFFIX)


def _clean_album(album: str) -> str:
    """An album title as displayed and keyed: no edition suffix, no featured artists."""
    return _clean(album, _ALBUM_SUFFIX)


def _primary_artist(artists: str) -> str:
    """The first of ';'-separated artists, without a ' feat. X' tail."""
    first = artists.split(";", 1)[0]
    return _squash(_ARTIST_CREDIT.sub("", first))


def track_entity_id(title: str, artists: str) -> str:
    """The id the builder gives the song `title` by `artists`, as any of the files spell them."""
    return _entity_id("track", _primary_artist(artists), _clean_title(title))


@functools.lru_cache(maxsize=1 << 16)
def _entity_id(entity_type: str, *names: str) -> str:
    """entity_id over the names (cached: the same names recur across files)."""
    return entity_id(entity_type, *(_id_part(name) for name in names))


def _genres(text: str) -> list[str]:
    if text.strip() == "set()":
        return []
    names = (_squash(part.lower().replace("-", " ")) for part in re.split(r"[,/]", text))
    return list(dict.fromkeys(name for name in names if name))


def _number(values: dict[str, str], column: str, low: float, high: float) -> float | None:
    text = values[column].strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        raise _BadRowError(f"{column} {text!r} is not a number") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise _BadRowError(f"{column} {text!r} is outside [{low:g}, {high:g}]")
    return number


def _year(values: dict[str, str], column: str) -> int | None:
    number = _number(values, column, 1900, 2100)
    if number is None:
        return None
    if not number.is_integer():
        raise _BadRowError(f"{column} {values[column].strip()!r} is not a whole year")
    return int(number)


def _explicit(values: dict[str, str], column: str) -> bool | None:
    text = values[column].strip().lower()
    if text in ("true", "false"):
        return text == "true"
    if not text:
        return None
    raise _BadRowError(f"{column} {values[column]!r} is neither True nor False")


def _parse(source: _Source, row: SourceRow) -> _Row:
    values: dict[str, str] = row.values
    title = _clean_title(values[source.title])
    artist = _primary_artist(values[source.artist])
    if not title:
        raise _BadRowError(f"{source.title} is empty")
    if not artist:
        raise _BadRowError(f"{source.artist} is empty")
    album = _clean_album(values[source.album]) if source.album else ""
    origin = row.origin
    features: dict[str, float] = {}
    if source.audio_features:
        for name in _UNIT_FEATURES:
            if (value := _number(values, name, 0, 1)) is not None:
                features[name] = value
        if (tempo := _number(values, "tempo", 0, 1000)) is not None:
            features["tempo"] = tempo
    return _Row(
        origins=[origin],
        title=title,
        artist=artist,
        album=album or None,
        album_origins={album: [origin]} if album else {},
        genres=[*source.fixed_genres, *(_genres(values[source.genre]) if source.genre else [])],
        popularity=_number(values, source.popularity, 0, math.inf) if source.popularity else None,
        year=_year(values, source.year) if source.year else None,
        explicit=_explicit(values, source.explicit) if source.explicit else None,
        features=features,
    )


def _fold(kept: _Row, repeat: _Row) -> None:
    """Add what a repeated row of the same song in the same file knows beyond the first."""
    kept.origins.extend(repeat.origins)
    kept.genres.extend(g for g in repeat.genres if g not in kept.genres)
    for album, origins in repeat.album_origins.items():
        kept.album_origins.setdefault(album, []).extend(origins)
    if repeat.popularity is not None and (
        kept.popularity is None or repeat.popularity > kept.popularity
    ):
        kept.popularity = repeat.popularity
        kept.album = repeat.album or kept.album
    kept.album = kept.album or repeat.album


def _read_source(path: Path, source: _Source, rejections: list[Rejection]) -> dict[str, _Row]:
    """The songs of one file by track id, its unusable rows added to `rejections`."""
    songs: dict[str, _Row] = {}
    for item in read_csv(path):
        if isinstance(item, Rejection):
            rejections.append(item)
            continue
        if missing := [c for c in source.columns if c not in item.values]:
            raise LtrrError(f"{path}: missing column(s) {', '.join(missing)}")
        try:
            song = _parse(source, item)
        except _BadRowError as exc:
            rejections.append(Rejection(file=item.file, line=item.line, reason=str(exc)))
            continue
        key = _entity_id("track", song.artist, song.title)
        if key in songs:
            _fold(songs[key], song)
        else:
            songs[key] = song
    return songs


def _rank_popularity(songs: Iterable[_Row]) -> None:
    """Set each song's rank: its percentile in the file, ties sharing their mean rank (a lone
    song has nothing to be ranked against and sits at the median)."""
    measured = sorted(
        ((s.popularity, i, s) for i, s in enumerate(songs) if s.popularity is not None),
        key=lambda m: (m[0], m[1]),
    )
    if len(measured) == 1:
        measured[0][2].rank = NO_MEASUREMENT_POPULARITY
        return
    start = 0
    while start < len(measured):
        end = start
        while end + 1 < len(measured) and measured[end + 1][0] == measured[start][0]:
            end += 1
        for _, _, song in measured[start : end + 1]:
            song.rank = (start + end) / 2 / (len(measured) - 1)
        start = end + 1


def _moods(features: dict[str, float]) -> list[str]:
    """Mood labels by the thresholds in the module docstring."""
    moods: list[str] = []
    energy, valence = features.get("energy"), features.get("valence")
    if energy is not None and valence is not None:
        if valence >= 0.5:
            moods += ["happy", "energetic"] if energy >= 0.6 else ["chill"]
        elif energy >= 0.6:
            moods += ["intense", "dark"] if valence < 0.25 else ["intense"]
        else:
            moods += ["melancholic", "sad"] if valence < 0.25 else ["melancholic"]
    if energy is not None and energy < 0.3:
        moods.append("calm")
    if features.get("acousticness", 0.0) >= 0.6:
        moods.append("acoustic")
    if features.get("danceability", 0.0) >= 0.7:
        moods.append("danceable")
    return moods


def _era(year: int) -> str:
    return f"{year // 10 * 10}s"


def _track_entity(track_id: str, rows: list[_Row]) -> dict[str, Any]:
    first = rows[0]
    entity: dict[str, Any] = {
        "id": track_id,
        "entity_type": "track",
        "title": first.title,
        "artist": first.artist,
    }
    if album := next((r.album for r in rows if r.album), None):
        entity["album"] = album
    if genres := list(dict.fromkeys(g for r in rows for g in r.genres)):
        entity["genre"] = genres
    years = [r.year for r in rows if r.year is not None]
    if years:
        entity["era"] = [_era(min(years))]
    features: dict[str, float] = {}
    for name in (*_UNIT_FEATURES, "tempo"):
        known = [r.features[name] for r in rows if name in r.features]
        if known:
            features[name] = round(sum(known) / len(known), 4)
    if moods := _moods(features):
        entity["mood"] = moods
    flags = [r.explicit for r in rows if r.explicit is not None]
    if flags:
        entity["explicit"] = ["true" if any(flags) else "false"]
    if years:
        entity["year"] = min(years)
    entity.update(features)
    ranks = [r.rank for r in rows if r.rank is not None]
    entity["popularity"] = round(max(ranks), 4) if ranks else NO_MEASUREMENT_POPULARITY
    entity["sources"] = [origin for r in rows for origin in r.origins]
    return entity


def _group_entity(group_id: str, entity_type: str, group: _Group) -> dict[str, Any]:
    entity: dict[str, Any] = {"id": group_id, "entity_type": entity_type, "title": group.title}
    entity["artist"] = group.artist
    if entity_type == "album":
        entity["album"] = group.title
    genres = Counter(g for t in group.tracks for g in t.get("genre", []))
    if genres:
        entity["genre"] = [g for g, _ in genres.most_common(MAX_GROUP_GENRES)]
    if eras := sorted({e for t in group.tracks for e in t.get("era", [])}):
        entity["era"] = eras
    entity["popularity"] = max(t["popularity"] for t in group.tracks)
    entity["sources"] = list(dict.fromkeys(group.origins))
    return entity


def build_music_catalog(data_dir: Path) -> MusicCatalog:
    """Tracks, artists and albums from the four track files in `data_dir` (rules above)."""
    rejections: list[Rejection] = []
    songs: dict[str, list[_Row]] = {}
    for source in _SOURCES:
        found = _read_source(data_dir / source.file, source, rejections)
        _rank_popularity(found.values())
        for key, song in found.items():
            songs.setdefault(key, []).append(song)

    artists_of: dict[str, set[str]] = defaultdict(set)
    for rows in songs.values():
        for row in rows:
            for title in row.album_origins:
                artists_of[title].add(row.artist)
    compilations = {t for t, names in artists_of.items() if len(names) >= COMPILATION_ARTISTS}
    tracks: list[dict[str, Any]] = []
    artists: dict[str, _Group] = {}
    albums: dict[str, _Group] = {}
    for track_id, rows in songs.items():
        track = _track_entity(track_id, rows)
        tracks.append(track)
        name = track["artist"]
        artist = artists.setdefault(_entity_id("artist", name), _Group(name, name))
        artist.tracks.append(track)
        artist.origins.extend(track["sources"])
        for row in rows:
            for title, origins in row.album_origins.items():
                owner = VARIOUS_ARTISTS if title in compilations else name
                album_id = _entity_id("album", owner, title)
                album = albums.setdefault(album_id, _Group(title, owner))
                if not album.tracks or album.tracks[-1] is not track:
                    album.tracks.append(track)
                album.origins.extend(origins)

    entities = [
        *tracks,
        *(_group_entity(key, "artist", group) for key, group in artists.items()),
        *(_group_entity(key, "album", group) for key, group in albums.items()),
    ]
    return MusicCatalog(entities=entities, rejections=rejections)


def _query_id(title: str) -> str:
    return slug(_id_part(title))


def editorial_judgments(
    data_dir: Path,
) -> tuple[list[tuple[str, str]], list[tuple[str, str, int]], list[Rejection]]:
    """One judged query per editorial playlist: (query id, playlist title) queries, qrels
    (query id, track id, 1) for its tracks, and the playlist rows that could not be used,
    including those naming a track the catalog does not have."""
    catalog = build_music_catalog(data_dir)
    tracks = {e["id"] for e in catalog.entities if e["entity_type"] == "track"}
    path = data_dir / _PLAYLISTS_FILE
    queries: dict[str, str] = {}
    qrels: dict[tuple[str, str], None] = {}
    rejections: list[Rejection] = []
    for item in read_csv(path):
        if isinstance(item, Rejection):
            rejections.append(item)
            continue
        if missing := [c for c in ("playlist", "track", "artist") if c not in item.values]:
            raise LtrrError(f"{path}: missing column(s) {', '.join(missing)}")
        reason = None
        title = item.values["playlist"].strip()
        track_id = track_entity_id(item.values["track"], item.values["artist"])
        query_id = _query_id(title)
        if not title or not item.values["track"].strip() or not item.values["artist"].strip():
            reason = "playlist, track or artist is empty"
        elif queries.get(query_id, title) != title:
            reason = f"playlist {title!r} has the query id of {queries[query_id]!r}"
        elif track_id not in tracks:
            reason = f"track {track_id} is not in the catalog"
        if reason:
            rejections.append(Rejection(file=item.file, line=item.line, reason=reason))
            continue
        queries.setdefault(query_id, title)
        qrels[(query_id, track_id)] = None
    return (
        list(queries.items()),
        [(query_id, track_id, 1) for query_id, track_id in qrels],
        rejections,
    )
