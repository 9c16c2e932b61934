"""Hostile input where no node is needed: settings from the environment and config files, catalog
schemas, index prefixes, catalog files, feedback events, and the command line with OpenSearch out
of reach. Every case ends in a result that is valid or a clear error: never a traceback.

`pytest --hypothesis-show-statistics` reports how many cases each property tried.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from hypothesis import HealthCheck, assume, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from ltrr_os import ConfigError, FeedbackEvent, LtrrError, load_settings
from ltrr_os.catalog import Rejection, SourceRow, prepare_entity, read_rows
from ltrr_os.catalog._entities import RowError
from ltrr_os.cli import app
from ltrr_os.config import LtrrSettings, load_schema
from ltrr_os.feedback import ubi_event
from ltrr_os.opensearch import logical_indices
from ltrr_os.strategies._clauses import (
    FUZZY_WORDS,
    LEXICAL_MAX_WORDS,
    MAX_COMPACT_FUZZY_CHARS,
    MAX_FUZZY_TERM_CHARS,
    MAX_TEXT_WORDS,
    bounded_text,
    text_clauses,
    text_tokens,
)

T = TypeVar("T")
FAST = hypothesis_settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
UNREACHABLE = {"LTRR_OPENSEARCH_URL": "http://127.0.0.1:9", "LTRR_MAX_RETRIES": "0"}
MUSIC = load_schema("music")
MUSIC_TOML = Path(load_schema.__code__.co_filename).parent / "schemas" / "music.toml"

# Values of the kinds that break naive code: huge, non-finite, wrong types, odd unicode.
WEIRD_TEXT = st.one_of(
    st.text(max_size=50),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "\ud800",
            "nan",
            "-inf",
            "1e400",
            "../../etc/passwd",
            "*",
            "_all",
            "a,b",
            "[red]x[/]",
            "[/]",
            "{{size}}",
            "\u202e\u200b",
            "x" * 100_000,
            "ünïcødé 😀",
        ]
    ),
)
# Texts whose cost in OpenSearch grows with them: one long word, long runs of scripts written
# without spaces (Thai, CJK) or with long words (Devanagari, Arabic), many words, and mixes.
SCRIPTS = {
    "latin": "abcdefghijklmnopqrstuvwxyzéß",
    "thai": "".join(map(chr, range(0x0E01, 0x0E3B))),
    "cjk": "".join(map(chr, range(0x4E00, 0x4E80))) + "の東京タワー",
    "arabic": "".join(map(chr, range(0x0621, 0x064B))),
    "devanagari": "".join(map(chr, range(0x0905, 0x094E))),
    "hangul": "".join(map(chr, range(0xAC00, 0xAC40))),
}
_RUN = st.sampled_from(sorted(SCRIPTS)).flatmap(
    lambda script: st.text(alphabet=SCRIPTS[script], min_size=1, max_size=512)
)
EXPENSIVE_TEXT = st.one_of(
    st.builds(lambda letter, n: letter * n, st.sampled_from("aé東ก"), st.integers(21, 512)),
    _RUN,
    st.lists(_RUN, min_size=2, max_size=200).map(" ".join),
    st.lists(st.sampled_from(["rock", "80s", "love", "queen", "x"]), min_size=11, max_size=300).map(
        " ".join
    ),
).map(lambda text: text[:512])
WEIRD_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**30, max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    WEIRD_TEXT,
)
WEIRD_VALUE = st.recursive(
    WEIRD_SCALAR,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


def attempt(call: Callable[[], T], *expected: type[Exception]) -> tuple[T | None, str]:
    """The result, or None and the message of an expected error (any other one fails the test)."""
    try:
        return call(), ""
    except expected as error:
        return None, str(error) or type(error).__name__


def finite(value: Any) -> bool:
    """No NaN or infinity anywhere: JSON has no such numbers."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(finite(v) for v in value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    return True


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("LTRR_") or name == "OPENSEARCH_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


# -- settings ---------------------------------------------------------------------------------

SETTING_NAMES = sorted(LtrrSettings.model_fields)


@FAST
@given(name=st.sampled_from(SETTING_NAMES), value=WEIRD_TEXT)
def test_any_environment_value_gives_valid_settings_or_a_config_error(
    name: str, value: str
) -> None:
    assume("\x00" not in value and "\ud800" not in value)  # the OS refuses these in a variable
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(f"LTRR_{name.upper()}", value)
        settings, error = attempt(load_settings, ConfigError)
    if settings is None:
        assert error.startswith("invalid settings")
        assert name != "password" or value not in error
    else:
        assert settings.hosts
        assert settings.max_query_chars >= 1


def toml_value(value: Any) -> str:
    """A TOML literal (JSON is TOML for strings, numbers and arrays of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value) if value is not None else '""'


@FAST
@given(
    pairs=st.dictionaries(
        st.sampled_from([*SETTING_NAMES, "unknown", "opensearch-url"]),
        st.one_of(WEIRD_SCALAR, st.lists(WEIRD_SCALAR, max_size=3)),
        max_size=4,
    ),
    junk=st.sampled_from(["", "[section]\n", "x = \n", "a = " + "[" * 5000, "\xff", "= 1\n"]),
)
def test_any_config_file_gives_valid_settings_or_a_config_error(
    tmp_path: Path, pairs: dict[str, Any], junk: str
) -> None:
    config = tmp_path / "ltrr.toml"
    lines = [f"{name} = {toml_value(value)}" for name, value in pairs.items()]
    config.write_text("\n".join(lines) + "\n" + junk, encoding="utf-8", errors="surrogatepass")
    settings, error = attempt(lambda: load_settings(config), ConfigError)
    assert (settings is None) == (str(config) in error)


@FAST
@given(data=st.binary(max_size=300))
def test_a_config_file_of_random_bytes_gives_a_config_error_or_settings(
    tmp_path: Path, data: bytes
) -> None:
    config = tmp_path / "ltrr.toml"
    config.write_bytes(data)
    settings, error = attempt(lambda: load_settings(config), ConfigError)
    assert (settings is None) == (str(config) in error)


def test_a_url_with_credentials_is_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigError, match="credentials in the URL") as error:
        load_settings(opensearch_url="https://admin:hunter2@search.example:9200")
    assert "hunter2" not in str(error.value)


def test_an_empty_environment_variable_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LTRR_PASSWORD", "")
    monkeypatch.setenv("LTRR_CA_CERTS", "")
    settings = load_settings()
    assert (settings.password, settings.ca_certs) == (None, None)


# -- catalog schemas --------------------------------------------------------------------------


def replace_value(lines: list[str], index: int, value: Any) -> str:
    """The lines with the value of line `index` (if it has one) replaced."""
    key, equals, _ = lines[index].partition("=")
    changed = f"{key}= {toml_value(value)}" if equals else lines[index]
    return "\n".join([*lines[:index], changed, *lines[index + 1 :]])


def mutations(text: str) -> st.SearchStrategy[str]:
    """The real schema with one line dropped, replaced, or cut short."""
    lines = text.splitlines()
    index = st.integers(0, len(lines) - 1)
    return st.one_of(
        index.map(lambda i: "\n".join(lines[:i] + lines[i + 1 :])),
        st.tuples(index, WEIRD_VALUE).map(lambda p: replace_value(lines, *p)),
        st.integers(0, len(text)).map(lambda cut: text[:cut]),
    )


@FAST
@given(text=st.one_of(mutations(MUSIC_TOML.read_text(encoding="utf-8")), st.text(max_size=200)))
def test_a_damaged_schema_file_gives_a_schema_or_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "schema.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    schema, error = attempt(lambda: load_schema(path), ConfigError)
    assert (schema is None) == (str(path) in error)
    assert schema is None or schema.text_fields


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"name = " + b"[" * 100_000, "nested too deeply"),
        (b"name = 1", "invalid"),
    ],
)
def test_unreadable_schema_files_say_why(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "schema.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_schema(path)


# -- index prefixes ---------------------------------------------------------------------------

INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@FAST
@given(
    prefix=st.one_of(
        st.text(max_size=70),
        st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True),
        st.sampled_from(["../", "..", ".", "*", "a*", ",", "a,b", "UPPER", "_all", "a/b", "a b"]),
    )
)
@example(prefix="_all")
@example(prefix="../")
def test_an_index_prefix_is_refused_or_gives_only_plain_index_names(prefix: str) -> None:
    settings, error = attempt(lambda: load_settings(index_prefix=prefix), ConfigError)
    if settings is None:
        assert "index_prefix" in error
        return
    assert not set(prefix) & set('*?,/\\ #:"<>|')
    for logical in logical_indices(settings, MUSIC):
        for name in (logical.alias(settings), f"{logical.alias(settings)}_v1"):
            assert INDEX_NAME.match(name), name
            assert len(name.encode()) <= 255


# -- catalog files ----------------------------------------------------------------------------

CELL = st.one_of(
    WEIRD_TEXT,
    st.sampled_from(['"', '""', "a,b", "line\nbreak", "x|y|z", "0.5", "nan", "1e999", "-0"]),
)


@FAST
@given(
    header=st.lists(
        st.sampled_from(["id", "entity_type", "title", "author", "body", "popularity", "x"]),
        min_size=1,
        max_size=6,
    ),
    rows=st.lists(st.lists(CELL, max_size=7), max_size=8),
)
def test_hostile_csv_rows_are_each_read_or_rejected_with_a_line(
    tmp_path: Path, header: list[str], rows: list[list[str]]
) -> None:
    lines = [
        ",".join(header),
        *(",".join(json.dumps(c) if "," in c else c for c in row) for row in rows),
    ]
    path = tmp_path / "rows.csv"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    check_rows(path)


@FAST
@given(
    lines=st.lists(
        st.one_of(
            st.dictionaries(
                st.sampled_from(
                    ["id", "entity_type", "title", "author", "body", "popularity", "embedding"]
                ),
                WEIRD_VALUE,
                max_size=6,
            ).map(lambda d: json.dumps(d, allow_nan=True)),
            WEIRD_TEXT,
            st.just("[" * 100_000),
        ),
        max_size=6,
    )
)
def test_hostile_jsonl_rows_are_each_read_or_rejected_with_a_line(
    tmp_path: Path, lines: list[str]
) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    check_rows(path)


@FAST
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".jsonl"]))
def test_random_bytes_as_a_catalog_file_are_read_or_rejected(
    tmp_path: Path, data: bytes, suffix: str
) -> None:
    path = tmp_path / f"rows{suffix}"
    path.write_bytes(data)
    _, error = attempt(lambda: check_rows(path), LtrrError)  # LtrrError: an unreadable header
    assert not error or str(path) in error


def check_rows(path: Path) -> None:
    """Every row becomes a stored document that JSON can carry, or a rejection with a line."""
    documents = load_schema("documents")
    for row in read_rows(path):
        if isinstance(row, Rejection):
            assert row.line >= 1
            assert row.reason
            continue
        assert isinstance(row, SourceRow)
        document, error = attempt(
            functools.partial(prepare_entity, documents, row.values, row.origin), RowError
        )
        assert (document is None) == bool(error)
        assert finite(document)
        orjson.dumps(document)


# -- feedback events --------------------------------------------------------------------------

EVENT_FIELDS = ["search_id", "action", "object_id", "position", "timestamp", "user_id", "event_id"]


@FAST
@given(raw=st.dictionaries(st.sampled_from([*EVENT_FIELDS, "extra"]), WEIRD_VALUE, max_size=7))
def test_any_event_is_valid_and_storable_or_refused_with_reasons(raw: dict[str, Any]) -> None:
    event, error = attempt(lambda: FeedbackEvent.model_validate(raw), ValidationError)
    if event is None:
        assert "validation error" in error
        return
    document = ubi_event(event)
    assert finite(document)
    assert orjson.loads(orjson.dumps(document))["query_id"] == event.search_id
    assert 1 <= len(event.key) <= 128


# -- the command line, OpenSearch out of reach -----------------------------------------------

COMMANDS = [
    "doctor",
    "bootstrap",
    "ingest",
    "search",
    "feedback",
    "replay",
    "evaluate",
    "train-ranker",
    "datasets",
    "version",
]
ARGUMENT = st.one_of(
    WEIRD_TEXT.filter(lambda a: "\x00" not in a and "\ud800" not in a),
    st.sampled_from(
        [
            "--schema",
            "--limit",
            "--json",
            "--user",
            "--out",
            "--queries",
            "-",
            "--help",
            "convert",
            "cranfield",
            "nosuch.csv",
            "--config",
            "--index-prefix",
            "-1",
            "1e9",
        ]
    ),
)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    before=st.lists(ARGUMENT, max_size=2),
    command=st.sampled_from(COMMANDS),
    after=st.lists(ARGUMENT, max_size=4),
)
def test_any_command_line_ends_in_a_message_and_an_exit_code_not_a_traceback(
    runner: CliRunner, before: list[str], command: str, after: list[str]
) -> None:
    result = runner.invoke(app, [*before, command, *after], env=UNREACHABLE, input="not json\n")
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.exception,
        result.output[-500:],
    )
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1, 2)
    if result.exit_code == 2:
        assert result.output.strip()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--index-prefix", "../", "doctor"], "index_prefix"),
        (["--index-prefix", "_all", "search", "x"], "index_prefix"),
        (["--index-prefix", "a*,b", "bootstrap"], "index_prefix"),
        (["--config", "missing.toml", "doctor"], "config file not found"),
        (["search", "queen", "--user", "a b"], "--user must be"),
        (["feedback", "nosuch.jsonl"], "No such file"),
        (["datasets", "convert", "[/]", "--out", "o"], "unknown collection '[/]'"),
        (["doctor"], "cannot reach OpenSearch at http://127.0.0.1:9"),
        (["search", "queen"], "cannot reach OpenSearch"),
    ],
)
def test_user_errors_are_one_clear_line_and_exit_code_2(
    runner: CliRunner, arguments: list[str], message: str
) -> None:
    result = runner.invoke(app, arguments, env=UNREACHABLE)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def _fuzzy_clauses(clauses: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(field, text) of each typo-tolerant match clause."""
    return [
        (field, match["query"])
        for clause in clauses
        for field, match in clause["match"].items()
        if "fuzziness" in match
    ]


@FAST
@given(text=st.one_of(EXPENSIVE_TEXT, WEIRD_TEXT, st.text(max_size=512)))
def test_expensive_text_is_bounded_by_construction(text: str) -> None:
    """Whatever the script: at most `max_words` tokens matched, typo tolerance only for a few
    short terms, and the compacted form fuzzy only when short: nothing whose rewrite grows
    with the text reaches OpenSearch."""
    for max_words in (MAX_TEXT_WORDS, LEXICAL_MAX_WORDS):
        clauses = text_clauses(MUSIC, text, max_words=max_words)
        for clause in clauses:
            ((_, match),) = clause["match"].items()
            assert len(text_tokens(match["query"])) <= max_words
        for field, query in _fuzzy_clauses(clauses):
            assert len(text_tokens(query)) <= FUZZY_WORDS
            assert all(len(word) <= MAX_FUZZY_TERM_CHARS for word in query.split())
            if field.endswith(".compact"):
                assert len(query.replace(" ", "")) <= MAX_COMPACT_FUZZY_CHARS


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("songs by queen", 3),
        ("東京タワー", 5),  # the standard tokenizer: one token per ideograph or kana at most
        ("สวัสดีครับ ผม", 2),  # Thai runs are one token each
        ("नमस्ते दुनिया", 2),  # vowel signs belong to their word
        ("don't stop 🎸", 4),  # symbols count alone
        ("", 0),
    ],
)
def test_text_tokens_count_at_least_the_standard_tokenizers(text: str, tokens: int) -> None:
    assert len(text_tokens(text)) == tokens
    assert len(text_tokens(bounded_text(text, 2))) == min(tokens, 2)
