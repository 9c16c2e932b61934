"""Runtime settings: where OpenSearch is, how to authenticate, where models live.

Sources, strongest first: explicit arguments, environment (``LTRR_*``, and ``OPENSEARCH_URL``),
a TOML config file (``--config``, ``LTRR_CONFIG``, or ``./ltrr.toml``), defaults.
"""

from __future__ import annotations

import os
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .._errors import ConfigError

DEFAULT_CONFIG_FILE = Path("ltrr.toml")
_INDEX_PREFIX = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_config_file: ContextVar[Path | None] = ContextVar("ltrr_config_file", default=None)


_USERINFO = re.compile(r"[^\s/@]+@")


def redact_url(text: str) -> str:
    """The text with whatever stands before an '@' in a URL (user, password) replaced by ***."""
    return _USERINFO.sub("***@", text)


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ltrr-os"


DEFAULT_COST_PER_CANDIDATE = 0.002
"""100 candidates cost 0.2 of a search's engagement (see `LtrrSettings.cost_per_candidate`)."""


class LtrrSettings(BaseSettings):
    """Connection and storage settings shared by the client, the CLI and the tests."""

    model_config = SettingsConfigDict(
        env_prefix="LTRR_",
        env_ignore_empty=True,  # LTRR_PASSWORD= means unset, not an empty password
        extra="forbid",
        populate_by_name=True,
        hide_input_in_errors=True,
    )

    opensearch_url: str = Field(
        default="http://localhost:9200",
        validation_alias=AliasChoices("LTRR_OPENSEARCH_URL", "OPENSEARCH_URL", "opensearch_url"),
        description="One URL, or several separated by commas (nodes of one cluster).",
    )
    username: str | None = None
    password: SecretStr | None = None
    verify_certs: bool = True
    ca_certs: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    aws_region: str | None = Field(
        default=None, description="Sign requests with AWS SigV4 for this region."
    )
    aws_service: Literal["es", "aoss"] = "es"
    request_timeout_s: float = Field(default=10.0, gt=0, le=300)
    max_retries: int = Field(default=2, ge=0, le=10)
    index_prefix: str = "ltrr-"
    index_shards: int = Field(
        default=1,
        ge=1,
        le=64,
        description="primary shards of the indices that grow with the catalog and the traffic "
        "(catalog, ubi_queries, ubi_events); state, models and profiles keep one (a few "
        "documents, or one small document per user, read by id). A change reindexes them "
        "at the next `ltrr bootstrap`",
    )
    index_replicas: int = Field(default=0, ge=0, le=5, description="replicas of every index")
    model_dir: Path = Field(default_factory=lambda: _default_data_dir() / "models")
    spool_dir: Path = Field(
        default_factory=lambda: _default_data_dir() / "spool",
        description="durable local log of searches and events not yet in OpenSearch",
    )
    ubi_shared_aliases: bool = Field(
        default=False,
        description="also join the read aliases ubi_queries and ubi_events that UBI dashboards "
        "read (off by default: they are the UBI plugin's index names, and every prefix, "
        "simulations and tests included, would land in them)",
    )
    max_query_chars: int = Field(default=512, ge=1, le=10_000)
    max_results: int = Field(default=100, ge=1, le=1000)
    candidate_budget: int = Field(default=400, ge=1, le=5000)
    cost_per_candidate: float = Field(
        default=DEFAULT_COST_PER_CANDIDATE,
        ge=0,
        le=1,
        description="what the learned policies pay per candidate drawn, in units of one "
        "search's engagement (their reward: engagement found minus this per candidate); "
        "lower buys recall with candidates. New policies take it; `ltrr replay` rebuilds",
    )
    search_timeout_ms: int = Field(default=1000, ge=10, le=60_000)
    expansion_deadline_ms: int | None = Field(
        default=None,
        ge=0,
        le=60_000,
        description="by when, from the start of a search, an expansion (the related strategy's "
        "second round trip) must be done; too little left and it is not sent (default: the "
        "search's own timeout, search_timeout_ms)",
    )
    model_reload_s: float = Field(
        default=2.0,
        ge=0.1,
        validation_alias=AliasChoices(
            "LTRR_MODEL_RELOAD_S", "model_reload_s", "LTRR_RANKER_RELOAD_S", "ranker_reload_s"
        ),
        description="how often a serving process looks for newly promoted models",
    )
    profile_cache_s: float = Field(
        default=10.0, ge=0, description="how long a serving process reuses a user's profile"
    )
    reward_window_s: float = Field(
        default=1800.0,
        ge=0,
        description="how long a search waits for engagement before the "
        "policy learns that nothing was engaged",
    )

    @field_validator("opensearch_url")
    @classmethod
    def _check_urls(cls, value: str) -> str:
        urls = [u.strip() for u in value.split(",") if u.strip()]
        if not urls:
            raise ValueError("no OpenSearch URL given")
        for url in urls:
            if "@" in url:
                # Not echoed: it holds a password. Credentials in a URL end up in logs and output.
                raise ValueError(
                    "credentials in the URL are not accepted; set username and password "
                    "(LTRR_USERNAME, LTRR_PASSWORD) instead"
                )
            if not re.match(r"^https?://[^\s/?#]+(/[^\s?#]*)?$", url):
                raise ValueError(f"not an http(s) URL: {redact_url(url)!r}")
        return ",".join(urls)

    @field_validator("index_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not _INDEX_PREFIX.match(value):
            raise ValueError(
                "must be lowercase letters, digits, '.', '_' or '-', start with a letter or digit, "
                "and be at most 64 characters (no wildcards, slashes or spaces)"
            )
        return value

    @property
    def hosts(self) -> list[str]:
        return self.opensearch_url.split(",")

    def index_name(self, name: str) -> str:
        """The prefixed name of one of ltrr-os' indices or aliases."""
        return f"{self.index_prefix}{name}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = _config_file.get()
        if config_file is None:
            return (init_settings, env_settings)
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, config_file))


def load_settings(config_file: Path | None = None, **overrides: Any) -> LtrrSettings:
    """Settings from arguments, environment and the config file, or a ConfigError saying why not."""
    path = config_file
    if path is None and os.environ.get("LTRR_CONFIG"):
        path = Path(os.environ["LTRR_CONFIG"])
    if path is None and DEFAULT_CONFIG_FILE.is_file():
        path = DEFAULT_CONFIG_FILE
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            with path.open("rb") as file:  # as the settings source reads it: no newline translation
                tomllib.load(file)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        except RecursionError:
            raise ConfigError(f"config file {path} is nested too deeply") from None
    token = _config_file.set(path)
    try:
        return LtrrSettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        source = f" (config file {path})" if path else ""
        raise ConfigError(f"invalid settings{source}: {problems}") from None
    finally:
        _config_file.reset(token)
