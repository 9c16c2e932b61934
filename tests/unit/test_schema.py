from __future__ import annotations

from pathlib import Path

import pytest

from ltrr_os import ConfigError
from ltrr_os.config import load_schema

SCHEMA = """
name = "shop"
entity_types = ["product"]
[fields.title]
type = "text"
required = true
[fields.brand]
type = "text"
analysis = "name"
slot = "brand"
[fields.color]
type = "keyword"
slot = "color"
[embedding]
text = "{title} {brand} {color}"
[[predicted_queries]]
template = "{brand} {title}"
prior = 1.0
[[predicted_queries]]
template = "{color} {title}"
prior = 0.5
by_popularity = true
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schema.toml"
    path.write_text(text)
    return path


def test_builtin_schemas_load() -> None:
    music = load_schema("music")
    assert music.entity_types == ["track", "artist", "album"]
    assert music.slots == {"artist": "artist", "genre": "genre", "era": "era", "mood": "mood"}
    assert list(load_schema("documents").text_fields) == ["title", "body", "author", "bibliography"]


def test_custom_schema_from_file(tmp_path: Path) -> None:
    schema = load_schema(write(tmp_path, SCHEMA))
    assert schema.slots == {"brand": "brand", "color": "color"}
    product = {
        "entity_type": "product",
        "title": "Runner",
        "brand": "Acme",
        "color": ["red", "blue"],
        "popularity": 0.5,
    }
    assert schema.embedding_text(product) == "Runner Acme red blue"
    assert list(schema.predicted_queries_for(product)) == [
        ("Acme Runner", 1.0),
        ("red Runner", 0.25),
        ("blue Runner", 0.25),
    ]


def test_predicted_queries_skip_missing_fields_and_other_entity_types() -> None:
    music = load_schema("music")
    artist = {
        "entity_type": "artist",
        "title": "Green Day",
        "artist": "Green Day",
        "popularity": 0.0,
    }
    assert list(music.predicted_queries_for(artist)) == [("Green Day", 1.0)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("[fields.title]", "[fields.Title]"), "must match"),
        (("[fields.color]", "[fields.embedding]"), "reserved"),
        (('text = "{title} {brand} {color}"', 'text = "{nope}"'), "unknown fields"),
        (('type = "keyword"', 'type = "blob"'), "fields.color"),
        (('entity_types = ["product"]', "entity_types = []"), "entity_types"),
        (("prior = 1.0", "prior = -1"), "prior"),
        (("prior = 1.0", 'prior = 1.0\nentity_types = ["ghost"]'), "unknown entity type"),
    ],
)
def test_invalid_schemas_say_what_is_wrong(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_schema(write(tmp_path, SCHEMA.replace(*change, 1)))


def test_unknown_schema_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a built-in schema"):
        load_schema("nonexistent")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_schema(write(tmp_path, "name = "))
