from __future__ import annotations

import csv
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ltrr_os._errors import LtrrError
from ltrr_os.catalog import prepare_entity, sample_rows
from ltrr_os.catalog._music import (
    NO_MEASUREMENT_POPULARITY,
    MusicCatalog,
    build_music_catalog,
    editorial_judgments,
    track_entity_id,
)
from ltrr_os.config import load_schema

MUSIC_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "music"
TRACK_FILES = (
    "editorial_tracks.csv",
    "top_hits_2000_2019.csv",
    "spotify_tracks_by_genre.csv",
    "classic_rock_song_list.csv",
)

# Headers copied from the real files.
EDITORIAL = ["track", "artist", "album"]
PLAYLISTS = ["playlist", "track", "artist", "album"]
SPOTIFY = [
    "track_id",
    "artists",
    "album_name",
    "track_name",
    "popularity",
    "duration_ms",
    "explicit",
    "danceability",
    "energy",
    "key",
    "loudness",
    "mode",
    "speechiness",
    "acousticness",
    "instrumentalness",
    "liveness",
    "valence",
    "tempo",
    "time_signature",
    "track_genre",
]
TOP_HITS = [
    "artist",
    "song",
    "duration_ms",
    "explicit",
    "year",
    "popularity",
    "danceability",
    "energy",
    "key",
    "loudness",
    "mode",
    "speechiness",
    "acousticness",
    "instrumentalness",
    "liveness",
    "valence",
    "tempo",
    "genre",
]
CLASSIC_ROCK = [
    "Song Clean",
    "ARTIST CLEAN",
    "Release Year",
    "COMBINED",
    "First?",
    "Year?",
    "PlayCount",
    "F*G",
]
HEADERS = {
    "editorial_tracks.csv": EDITORIAL,
    "editorial_playlists.csv": PLAYLISTS,
    "spotify_tracks_by_genre.csv": SPOTIFY,
    "top_hits_2000_2019.csv": TOP_HITS,
    "classic_rock_song_list.csv": CLASSIC_ROCK,
}


def spotify(
    artists: str,
    title: str,
    *,
    album: str = "Some Album",
    popularity: str = "50.0",
    explicit: str = "False",
    energy: str = "0.5",
    valence: str = "0.5",
    danceability: str = "0.5",
    acousticness: str = "0.1",
    tempo: str = "120.0",
    genre: str = "rock",
) -> dict[str, str]:
    return {
        "track_id": "x",
        "artists": artists,
        "album_name": album,
        "track_name": title,
        "popularity": popularity,
        "duration_ms": "200000.0",
        "explicit": explicit,
        "danceability": danceability,
        "energy": energy,
        "key": "1.0",
        "loudness": "-5.0",
        "mode": "1.0",
        "speechiness": "0.05",
        "acousticness": acousticness,
        "instrumentalness": "0.0",
        "liveness": "0.1",
        "valence": valence,
        "tempo": tempo,
        "time_signature": "4.0",
        "track_genre": genre,
    }


def top_hit(
    artist: str,
    song: str,
    *,
    year: str = "2005",
    popularity: str = "50",
    explicit: str = "False",
    energy: str = "0.5",
    valence: str = "0.5",
    danceability: str = "0.5",
    acousticness: str = "0.1",
    tempo: str = "120.0",
    genre: str = "pop",
) -> dict[str, str]:
    return {
        "artist": artist,
        "song": song,
        "duration_ms": "200000",
        "explicit": explicit,
        "year": year,
        "popularity": popularity,
        "danceability": danceability,
        "energy": energy,
        "key": "1",
        "loudness": "-5.0",
        "mode": "1",
        "speechiness": "0.05",
        "acousticness": acousticness,
        "instrumentalness": "0.0",
        "liveness": "0.1",
        "valence": valence,
        "tempo": tempo,
        "genre": genre,
    }


def classic(song: str, artist: str, year: str, plays: str) -> dict[str, str]:
    return {
        "Song Clean": song,
        "ARTIST CLEAN": artist,
        "Release Year": year,
        "COMBINED": f"{song} by {artist}",
        "First?": "1",
        "Year?": "1",
        "PlayCount": plays,
        "F*G": plays,
    }


def editorial(track: str, artist: str, album: str = "") -> dict[str, str]:
    return {"track": track, "artist": artist, "album": album}


def playlist(name: str, track: str, artist: str) -> dict[str, str]:
    return {"playlist": name, "track": track, "artist": artist, "album": ""}


def write_data(directory: Path, **rows_by_stem: Sequence[dict[str, str] | Sequence[str]]) -> Path:
    """Every music file with its real header; `rows_by_stem` fills some (a row given as a list is
    written as raw cells, to make malformed rows)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, header in HEADERS.items():
        with (directory / name).open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for row in rows_by_stem.get(name.removesuffix(".csv"), []):
                writer.writerow([row[c] for c in header] if isinstance(row, dict) else row)
    return directory


def by_id(catalog: MusicCatalog) -> dict[str, dict[str, Any]]:
    return {entity["id"]: entity for entity in catalog.entities}


def of_type(catalog: MusicCatalog, entity_type: str) -> list[dict[str, Any]]:
    return [e for e in catalog.entities if e["entity_type"] == entity_type]


# --- keys and ids ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "artists", "expected"),
    [
        ("Hey Jude", "The Beatles", "track:the-beatles--hey-jude"),
        ("Hey Jude - Remastered 2015", "The Beatles", "track:the-beatles--hey-jude"),
        ("Hey Jude - 2015 Remaster", "The Beatles", "track:the-beatles--hey-jude"),
        ("Hey Jude (Remastered)", "The Beatles", "track:the-beatles--hey-jude"),
        ("Hey Jude - Mono / 2009 Remastered", "The Beatles", "track:the-beatles--hey-jude"),
        ("Hey Jude - Stereo", "The Beatles", "track:the-beatles--hey-jude"),
        ("Hey Jude - Radio Edit", "The Beatles", "track:the-beatles--hey-jude"),
        ("Hey Jude - Single Version", "The Beatles", "track:the-beatles--hey-jude"),
        ("Hey Jude - Live", "The Beatles", "track:the-beatles--hey-jude-live"),
        ("Hey Jude (Remix)", "The Beatles", "track:the-beatles--hey-jude-remix"),
        ("Cold (feat. Future)", "Maroon 5", "track:maroon-5--cold"),
        ("Cold [feat. Future] - Radio Edit", "Maroon 5", "track:maroon-5--cold"),
        (
            "10,000 Hours (with Justin Bieber)",
            "Dan + Shay;Justin Bieber",
            "track:dan-shay--10-000-hours",
        ),
        ("Time - feat. Jules Buckley", "Hans Zimmer", "track:hans-zimmer--time"),
        ("All Eyez feat. Jeremih", "The Game", "track:the-game--all-eyez"),
        ("Love (With You)", "Someone", "track:someone--love-with-you"),
        ("Fantasy", "Bellatrax Feat. Sophia May", "track:bellatrax--fantasy"),
        ("Sweet Thing", "Rufus Featuring Chaka Khan", "track:rufus--sweet-thing"),
        ("Dixie Chicken", "Little Feat", "track:little-feat--dixie-chicken"),
        ("Mrs. Robinson", "Simon & Garfunkel", "track:simon-and-garfunkel--mrs-robinson"),
        ("September", "Earth, Wind & Fire", "track:earth-wind-and-fire--september"),
        ("Can\u2019t Stop", "Red Hot Chili Peppers", "track:red-hot-chili-peppers--cant-stop"),
        ("Beyoncé", "Someone", "track:someone--beyonce"),
    ],
)
def test_track_ids_key_on_primary_artist_and_title_without_release_suffixes(
    title: str, artists: str, expected: str
) -> None:
    assert track_entity_id(title, artists) == expected


def test_names_without_latin_letters_get_distinct_stable_ids() -> None:
    first, second = track_entity_id("紅蓮華", "LiSA"), track_entity_id("残響散歌", "LiSA")
    assert first != second
    assert first.startswith("track:lisa--h")
    assert track_entity_id("紅蓮華", "LiSA") == first
    assert track_entity_id("东岸", "艾福杰尼") != track_entity_id("东岸", "寿君超")


# --- merging ---------------------------------------------------------------------------------


@pytest.fixture
def merged(tmp_path: Path) -> MusicCatalog:
    return build_music_catalog(
        write_data(
            tmp_path,
            editorial_tracks=[
                editorial("Hey Jude - Remastered 2015", "The Beatles", "1 (Remastered)"),
                editorial("Quiet Song", "Nobody Famous"),
            ],
            top_hits_2000_2019=[
                top_hit(
                    "The Beatles",
                    "Hey Jude",
                    year="1970",
                    popularity="80",
                    energy="0.8",
                    valence="0.6",
                    genre="rock, Dance/Electronic",
                ),
                top_hit("Other", "Filler", popularity="10"),
            ],
            spotify_tracks_by_genre=[
                spotify(
                    "The Beatles;Billy Preston",
                    "Hey Jude (feat. Billy Preston)",
                    album="Past Masters",
                    popularity="20.0",
                    explicit="True",
                    energy="0.6",
                    valence="0.4",
                    genre="hip-hop",
                ),
                spotify("Other", "Loud One", popularity="90.0"),
            ],
            classic_rock_song_list=[
                classic("Hey Jude", "The Beatles", "1968", "100"),
                classic("Other Classic", "Other", "", "5"),
            ],
        )
    )


def test_a_song_in_several_files_is_one_track_with_all_sources(merged: MusicCatalog) -> None:
    assert merged.rejections == []
    track = by_id(merged)["track:the-beatles--hey-jude"]
    assert track["title"] == "Hey Jude"  # editorial first, remaster suffix removed
    assert track["artist"] == "The Beatles"
    assert track["album"] == "1"
    assert track["sources"] == [
        "editorial_tracks.csv:2",
        "top_hits_2000_2019.csv:2",
        "spotify_tracks_by_genre.csv:2",
        "classic_rock_song_list.csv:2",
    ]
    assert track["genre"] == ["rock", "dance", "electronic", "hip hop", "classic rock"]
    assert track["year"] == 1968  # the earliest
    assert track["era"] == ["1960s"]
    assert track["explicit"] == ["true"]
    assert track["energy"] == pytest.approx(0.7)
    assert track["valence"] == pytest.approx(0.5)
    assert track["mood"] == ["happy", "energetic"]
    # Ranks: top hits 80 > 10 -> 1.0; spotify 20 < 90 -> 0.0; classic rock 100 > 5 -> 1.0.
    assert track["popularity"] == 1.0


def test_max_popularity_over_sources(tmp_path: Path) -> None:
    catalog = build_music_catalog(
        write_data(
            tmp_path,
            top_hits_2000_2019=[
                top_hit("A", "Song", popularity="10"),
                top_hit("B", "Other", popularity="20"),
                top_hit("C", "Third", popularity="30"),
            ],
            spotify_tracks_by_genre=[
                spotify("A", "Song", popularity="60.0"),
                spotify("D", "Low", popularity="5.0"),
                spotify("E", "Lower", popularity="1.0"),
            ],
        )
    )
    # 'Song' is the lowest of top hits (0.0) but the highest in spotify (1.0).
    assert by_id(catalog)["track:a--song"]["popularity"] == 1.0
    assert by_id(catalog)["track:c--third"]["popularity"] == 1.0
    assert by_id(catalog)["track:e--lower"]["popularity"] == 0.0


def test_popularity_is_a_percentile_rank_with_ties_sharing_the_mean(tmp_path: Path) -> None:
    catalog = build_music_catalog(
        write_data(
            tmp_path,
            spotify_tracks_by_genre=[
                spotify("A", "Ten", popularity="10.0"),
                spotify("A", "Twenty", popularity="20.0"),
                spotify("A", "Also Twenty", popularity="20.0"),
                spotify("A", "Forty", popularity="40.0"),
            ],
            editorial_tracks=[editorial("Picked", "Editor Favourite")],
        )
    )
    popularity = {e["title"]: e["popularity"] for e in of_type(catalog, "track")}
    assert popularity == {
        "Picked": NO_MEASUREMENT_POPULARITY,
        "Ten": 0.0,
        "Twenty": 0.5,
        "Also Twenty": 0.5,
        "Forty": 1.0,
    }
    assert NO_MEASUREMENT_POPULARITY == 0.5


def test_repeated_rows_in_one_file_fold_into_the_first(tmp_path: Path) -> None:
    catalog = build_music_catalog(
        write_data(
            tmp_path,
            spotify_tracks_by_genre=[
                spotify("CCR", "Fortunate Son", album="Christmas Hits 2022", popularity="0.0"),
                spotify(
                    "CCR",
                    "Fortunate Son",
                    album="Willy And The Poor Boys (Expanded Edition)",
                    popularity="82.0",
                    genre="country",
                ),
                spotify("CCR", "Fortunate Son", album="Christmas Hits 2022", genre="rock"),
                spotify("Other", "Middle", popularity="40.0"),
            ],
        )
    )
    assert catalog.rejections == []
    tracks = of_type(catalog, "track")
    assert [t["title"] for t in tracks] == ["Fortunate Son", "Middle"]
    son = tracks[0]
    assert son["genre"] == ["rock", "country"]
    assert son["album"] == "Willy And The Poor Boys"  # the most popular release
    assert son["popularity"] == 1.0  # 82 ranks above 40
    assert son["sources"] == [f"spotify_tracks_by_genre.csv:{n}" for n in (2, 3, 4)]
    albums = {a["title"]: a["sources"] for a in of_type(catalog, "album")}
    assert albums == {
        "Christmas Hits 2022": ["spotify_tracks_by_genre.csv:2", "spotify_tracks_by_genre.csv:4"],
        "Willy And The Poor Boys": ["spotify_tracks_by_genre.csv:3"],
        "Some Album": ["spotify_tracks_by_genre.csv:5"],
    }


# --- attributes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("features", "moods"),
    [
        ({"energy": "0.8", "valence": "0.7"}, ["happy", "energetic"]),
        ({"energy": "0.4", "valence": "0.7"}, ["chill"]),
        ({"energy": "0.2", "valence": "0.7"}, ["chill", "calm"]),
        ({"energy": "0.9", "valence": "0.3"}, ["intense"]),
        ({"energy": "0.9", "valence": "0.1"}, ["intense", "dark"]),
        ({"energy": "0.5", "valence": "0.3"}, ["melancholic"]),
        ({"energy": "0.2", "valence": "0.1"}, ["melancholic", "sad", "calm"]),
        (
            {"energy": "0.5", "valence": "0.3", "acousticness": "0.9", "danceability": "0.8"},
            ["melancholic", "acoustic", "danceable"],
        ),
        ({"energy": "", "valence": "", "acousticness": "0.6"}, ["acoustic"]),
    ],
)
def test_mood_from_audio_features(
    tmp_path: Path, features: dict[str, str], moods: list[str]
) -> None:
    catalog = build_music_catalog(
        write_data(tmp_path, spotify_tracks_by_genre=[spotify("A", "Song", **features)])
    )
    assert by_id(catalog)["track:a--song"]["mood"] == moods


def test_genres_are_normalised(tmp_path: Path) -> None:
    catalog = build_music_catalog(
        write_data(
            tmp_path,
            top_hits_2000_2019=[
                top_hit("A", "One", genre="hip hop, R&B"),
                top_hit("A", "Two", genre="Folk/Acoustic"),
                top_hit("A", "Three", genre="set()"),
            ],
            spotify_tracks_by_genre=[spotify("B", "Four", genre="deep-house")],
        )
    )
    genres = {e["title"]: e.get("genre") for e in of_type(catalog, "track")}
    assert genres == {
        "One": ["hip hop", "r&b"],
        "Two": ["folk", "acoustic"],
        "Three": None,
        "Four": ["deep house"],
    }


def test_unknown_values_are_omitted_not_empty(merged: MusicCatalog) -> None:
    quiet = by_id(merged)["track:nobody-famous--quiet-song"]
    assert quiet == {
        "id": "track:nobody-famous--quiet-song",
        "entity_type": "track",
        "title": "Quiet Song",
        "artist": "Nobody Famous",
        "popularity": NO_MEASUREMENT_POPULARITY,
        "sources": ["editorial_tracks.csv:3"],
    }
    other = by_id(merged)["track:other--other-classic"]
    assert "year" not in other
    assert "era" not in other
    for entity in merged.entities:
        assert all(value not in (None, "", []) for value in entity.values())


def test_artists_and_albums_aggregate_their_tracks(merged: MusicCatalog) -> None:
    entities = by_id(merged)
    beatles = entities["artist:the-beatles"]
    assert beatles["title"] == beatles["artist"] == "The Beatles"
    assert beatles["popularity"] == 1.0
    assert beatles["era"] == ["1960s"]
    assert set(beatles["genre"]) == {"rock", "dance", "electronic", "hip hop", "classic rock"}
    assert "artist:billy-preston" not in entities  # featured artists are not artist entities
    album = entities["album:the-beatles--1"]
    assert album["title"] == album["album"] == "1"
    assert album["artist"] == "The Beatles"
    assert album["sources"] == ["editorial_tracks.csv:2"]
    assert entities["album:the-beatles--past-masters"]["sources"] == [
        "spotify_tracks_by_genre.csv:2"
    ]
    other = entities["artist:other"]
    # Filler (top hits 10 of 10..80) ranks 0.0, Loud One 1.0, Other Classic 0.0.
    assert other["popularity"] == 1.0
    assert other["era"] == ["2000s"]


def test_group_genres_keep_the_most_frequent(tmp_path: Path) -> None:
    rows = [
        top_hit("A", f"Song {i}", genre=", ".join(f"g{j}" for j in range(i + 1))) for i in range(10)
    ]
    catalog = build_music_catalog(write_data(tmp_path, top_hits_2000_2019=rows))
    assert by_id(catalog)["artist:a"]["genre"] == [f"g{j}" for j in range(8)]


def test_entities_follow_the_schema(merged: MusicCatalog) -> None:
    schema = load_schema("music")
    allowed = set(schema.fields) | {"id", "entity_type", "popularity", "sources"}
    for entity in merged.entities:
        assert set(entity) <= allowed
        assert entity["entity_type"] in schema.entity_types
        assert isinstance(entity["title"], str)
        assert entity["title"]
        assert 0.0 <= entity["popularity"] <= 1.0
        for name in schema.keyword_fields:
            assert isinstance(entity.get(name, []), list)
        assert isinstance(entity.get("year", 0), int)


def test_entity_order_is_deterministic(merged: MusicCatalog, tmp_path: Path) -> None:
    again = build_music_catalog(tmp_path)
    assert again.entities == merged.entities
    types = [e["entity_type"] for e in merged.entities]
    assert types == sorted(types, key=["track", "artist", "album"].index)


# --- bad rows --------------------------------------------------------------------------------


def test_bad_rows_are_rejected_with_file_and_line(tmp_path: Path) -> None:
    data = write_data(
        tmp_path,
        top_hits_2000_2019=[
            top_hit("A", "Good"),
            top_hit("A", ""),
            top_hit("", "No Artist"),
            top_hit("A", "Bad Year", year="19x5"),
            top_hit("A", "Bad Energy", energy="1.5"),
            top_hit("A", "Bad Flag", explicit="maybe"),
        ],
        spotify_tracks_by_genre=[["too", "few", "cells"], spotify("B", "Also Good")],
        classic_rock_song_list=[classic("Bullfrog Blues", "Rory Gallagher", "SONGFACTS.COM", "1")],
    )
    catalog = build_music_catalog(data)
    top_hits = str(data / "top_hits_2000_2019.csv")
    rejected = [(Path(r.file).name, r.line, r.reason) for r in catalog.rejections]
    assert rejected == [
        ("top_hits_2000_2019.csv", 3, "song is empty"),
        ("top_hits_2000_2019.csv", 4, "artist is empty"),
        ("top_hits_2000_2019.csv", 5, "year '19x5' is not a number"),
        ("top_hits_2000_2019.csv", 6, "energy '1.5' is outside [0, 1]"),
        ("top_hits_2000_2019.csv", 7, "explicit 'maybe' is neither True nor False"),
        ("spotify_tracks_by_genre.csv", 2, "expected 20 columns, found 3"),
        ("classic_rock_song_list.csv", 2, "Release Year 'SONGFACTS.COM' is not a number"),
    ]
    assert catalog.rejections[0].file == top_hits
    assert [e["title"] for e in of_type(catalog, "track")] == ["Good", "Also Good"]


def test_a_file_without_its_columns_is_an_error(tmp_path: Path) -> None:
    data = write_data(tmp_path)
    (data / "top_hits_2000_2019.csv").write_text("artist,title\nA,B\n", encoding="utf-8")
    with pytest.raises(LtrrError, match=r"top_hits_2000_2019\.csv: missing column\(s\) song"):
        build_music_catalog(data)


# --- editorial judgments ---------------------------------------------------------------------


def test_editorial_judgments_resolve_playlist_tracks(tmp_path: Path) -> None:
    data = write_data(
        tmp_path,
        editorial_tracks=[
            editorial("Hey Jude - Remastered 2015", "The Beatles"),
            editorial("Jolene", "Dolly Parton"),
        ],
        editorial_playlists=[
            playlist("Happy Folk!", "Hey Jude - 2015 Remaster", "The Beatles"),
            playlist("Happy Folk!", "Jolene", "Dolly Parton"),
            playlist("Happy Folk!", "Jolene", "Dolly Parton"),
            playlist("70s & 80s", "Hey Jude", "The Beatles feat. Nobody"),
            playlist("Happy  Folk", "Jolene", "Dolly Parton"),
            playlist("Lost", "Not In Catalog", "Nobody"),
            playlist("", "Jolene", "Dolly Parton"),
        ],
    )
    queries, qrels, rejections = editorial_judgments(data)
    assert queries == [("happy-folk", "Happy Folk!"), ("70s-and-80s", "70s & 80s")]
    assert qrels == [
        ("happy-folk", "track:the-beatles--hey-jude", 1),
        ("happy-folk", "track:dolly-parton--jolene", 1),
        ("70s-and-80s", "track:the-beatles--hey-jude", 1),
    ]
    assert [(r.line, r.reason) for r in rejections] == [
        (6, "playlist 'Happy  Folk' has the query id of 'Happy Folk!'"),
        (7, "track track:nobody--not-in-catalog is not in the catalog"),
        (8, "playlist, track or artist is empty"),
    ]
    assert all(Path(r.file).name == "editorial_playlists.csv" for r in rejections)


def test_playlists_do_not_shape_the_catalog(tmp_path: Path) -> None:
    tracks = [editorial("Jolene", "Dolly Parton"), editorial("Hey Jude", "The Beatles")]
    plain = build_music_catalog(write_data(tmp_path / "plain", editorial_tracks=tracks))
    judged = build_music_catalog(
        write_data(
            tmp_path / "judged",
            editorial_tracks=tracks,
            editorial_playlists=[
                playlist("Happy Folk", "Jolene", "Dolly Parton"),
                playlist("Sad 80s Metal", "Jolene", "Dolly Parton"),
                playlist("Sad 80s Metal", "Hey Jude", "The Beatles"),
            ],
        )
    )
    assert judged.entities == plain.entities
    jolene = by_id(judged)["track:dolly-parton--jolene"]
    assert not {"genre", "mood", "era"} & set(jolene)


# --- the real data ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real() -> MusicCatalog:
    return build_music_catalog(MUSIC_DATA)


def test_real_catalog_has_every_entity_type_with_unique_ids(real: MusicCatalog) -> None:
    counts = Counter(e["entity_type"] for e in real.entities)
    assert counts["track"] > 16_000  # editorial_tracks alone has ~16.6k (track, artist, album)
    assert counts["artist"] > 0
    assert counts["album"] > 0
    assert set(counts) == {"track", "artist", "album"}
    ids = [e["id"] for e in real.entities]
    assert len(ids) == len(set(ids))


def test_real_song_in_two_files_merges_with_max_popularity(
    real: MusicCatalog, tmp_path: Path
) -> None:
    song = "track:alien-ant-farm--smooth-criminal"
    track = by_id(real)[song]
    files = {source.split(":")[0] for source in track["sources"]}
    assert {"top_hits_2000_2019.csv", "spotify_tracks_by_genre.csv"} <= files
    alone = []
    for name in ("top_hits_2000_2019.csv", "spotify_tracks_by_genre.csv"):
        data = write_data(tmp_path / name)
        shutil.copy(MUSIC_DATA / name, data / name)
        alone.append(by_id(build_music_catalog(data))[song]["popularity"])
    assert alone[0] != alone[1]
    assert track["popularity"] == max(alone)


def test_real_rejections_carry_file_and_line(real: MusicCatalog) -> None:
    assert [(Path(r.file).name, r.line) for r in real.rejections] == [
        ("top_hits_2000_2019.csv", 23),
        ("classic_rock_song_list.csv", 549),
        ("classic_rock_song_list.csv", 1506),
    ]
    assert "1071" in real.rejections[1].reason
    assert all(Path(r.file).parent == MUSIC_DATA for r in real.rejections)


def test_real_catalog_does_not_read_the_playlists(real: MusicCatalog, tmp_path: Path) -> None:
    for name in TRACK_FILES:
        (tmp_path / name).symlink_to(MUSIC_DATA / name)
    assert build_music_catalog(tmp_path).entities == real.entities
    assert not any(
        source.startswith("editorial_playlists") for e in real.entities for source in e["sources"]
    )


def test_every_real_editorial_judgment_resolves(real: MusicCatalog) -> None:
    queries, qrels, rejections = editorial_judgments(MUSIC_DATA)
    assert rejections == []
    assert len(queries) == 200
    assert len(qrels) > 12_000
    tracks = {e["id"] for e in of_type(real, "track")}
    assert {entity for _, entity, _ in qrels} <= tracks
    assert {query for query, _, _ in qrels} == {query for query, _ in queries}
    assert ("80s-hard-rock", "80s Hard Rock") in queries


def test_the_shipped_sample_carries_its_vectors_and_passes_the_schema() -> None:
    """`ltrr quickstart` ingests it without encoding anything."""
    schema = load_schema("music")
    rows = list(sample_rows())
    assert 2500 < len(rows) < 4000
    artists = {row.values["artist"] for row in rows}
    assert {"Taylor Swift", "Queen"} <= artists
    for row in rows[:50]:
        document = prepare_entity(schema, row.values, row.origin)
        vector = document["embedding"]
        assert len(vector) == schema.embedding.dimension
        assert 0.95 < sum(v * v for v in vector) ** 0.5 < 1.05  # unit length, as encoded


def test_a_compilation_is_one_album_of_various_artists() -> None:
    """'80s Bangers Vol. 2' gathers tracks of many artists: one album, not one per artist."""
    catalog = build_music_catalog(MUSIC_DATA)
    albums = [e for e in catalog.entities if e["entity_type"] == "album"]
    titles = Counter(str(e["title"]) for e in albums)
    bangers = [e for e in albums if e["title"] == "80s Bangers Vol. 2"]
    assert len(bangers) == 1
    assert bangers[0]["artist"] == "Various Artists"
    assert titles.most_common(1)[0][1] <= 2  # the same title by two artists may be two albums
