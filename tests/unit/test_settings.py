from __future__ import annotations

from pathlib import Path

import pytest

from ltrr_os import ConfigError, load_settings
from ltrr_os.config import load_schema
from ltrr_os.opensearch._templates import logical_indices


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "OPENSEARCH_URL",
        "LTRR_OPENSEARCH_URL",
        "LTRR_CONFIG",
        "LTRR_INDEX_PREFIX",
        "LTRR_PASSWORD",
        "LTRR_USERNAME",
        "LTRR_INDEX_SHARDS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_verify_tls_and_use_localhost() -> None:
    settings = load_settings()
    assert settings.hosts == ["http://localhost:9200"]
    assert settings.verify_certs is True
    assert settings.index_name("catalog") == "ltrr-catalog"


def test_opensearch_url_env_and_several_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENSEARCH_URL", "http://a:9200, http://b:9201")
    assert load_settings().hosts == ["http://a:9200", "http://b:9201"]


def test_prefixed_url_wins_over_generic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENSEARCH_URL", "http://generic:9200")
    monkeypatch.setenv("LTRR_OPENSEARCH_URL", "http://ltrr:9200")
    assert load_settings().hosts == ["http://ltrr:9200"]


def test_config_file_is_read_and_environment_overrides_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "custom.toml"
    config.write_text('opensearch_url = "https://os:9200"\nindex_prefix = "shop-"\n')
    assert load_settings(config).index_prefix == "shop-"
    monkeypatch.setenv("LTRR_INDEX_PREFIX", "env-")
    settings = load_settings(config)
    assert (settings.index_prefix, settings.hosts) == ("env-", ["https://os:9200"])


def test_index_shards_reach_the_growing_indices_and_their_fingerprints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    music = load_schema("music")
    one = {i.name: i for i in logical_indices(load_settings(), music)}
    monkeypatch.setenv("LTRR_INDEX_SHARDS", "3")
    three = {i.name: i for i in logical_indices(load_settings(), music)}
    shards = {name: i.body()["settings"]["index"]["number_of_shards"] for name, i in three.items()}
    assert shards == {
        "catalog": 3,
        "ubi_queries": 3,
        "ubi_events": 3,
        "state": 1,
        "models": 1,
        "profiles": 1,
    }
    changed = {name for name in one if one[name].fingerprint() != three[name].fingerprint()}
    assert changed == {"catalog", "ubi_queries", "ubi_events"}  # bootstrap upgrades these


def test_ltrr_toml_in_working_directory_is_picked_up(tmp_path: Path) -> None:
    (tmp_path / "ltrr.toml").write_text('index_prefix = "local-"\n')
    assert load_settings().index_prefix == "local-"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("index_prefix = \n", "not valid TOML"),
        ('index_prefix = "a/*"\n', "index_prefix"),
        ('index_prefix = "UPPER"\n', "index_prefix"),
        ('opensearch_url = "ftp://x"\n', r"not an http\(s\) URL"),
        ('request_timeout_s = "nan"\n', "request_timeout_s"),
        ("unknown_key = 1\n", "unknown_key"),
    ],
)
def test_bad_config_files_say_what_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_settings(config)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")


def test_password_never_appears_in_repr_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LTRR_PASSWORD", "hunter2-secret")
    settings = load_settings()
    assert "hunter2-secret" not in repr(settings)
    assert "hunter2-secret" not in str(settings.model_dump())
    monkeypatch.setenv("LTRR_REQUEST_TIMEOUT_S", "hunter2-secret")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "hunter2-secret" not in str(error.value)


@pytest.mark.parametrize(
    "url",
    [
        "http:/user:s3cret-pw@host:9200",
        "http://user:s3cret-pw@host:9200",
        "https//user:s3cret-pw@host",
        "user:s3cret-pw@host:9200",
        "http://host:9200,http:/admin:s3cret-pw@other",
    ],
)
def test_a_url_with_credentials_is_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(opensearch_url=url)
    assert "s3cret-pw" not in str(refused.value)
    assert "credentials" in str(refused.value)


def test_a_search_context_is_checked_whenever_a_field_is_set() -> None:
    from datetime import datetime

    from pydantic import ValidationError

    from ltrr_os import SearchContext

    context = SearchContext(user_id="u1")
    with pytest.raises(ValidationError):
        context.user_id = "u" * 100_000
    with pytest.raises(ValidationError):
        context.timestamp = "not a time"  # type: ignore[assignment]
    context.timestamp = datetime(2026, 1, 1)
    assert context.user_id == "u1"
