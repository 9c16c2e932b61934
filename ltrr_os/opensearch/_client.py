"""One place that turns settings into an opensearch-py client."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import orjson
from opensearchpy import OpenSearch, RequestsHttpConnection
from opensearchpy.exceptions import (
    AuthenticationException,
    AuthorizationException,
    ConnectionError,
    ConnectionTimeout,
    OpenSearchException,
    SSLError,
    TransportError,
)
from opensearchpy.serializer import JSONSerializer

from .._errors import ConfigError, OpenSearchUnavailableError
from ..config import LtrrSettings

if TYPE_CHECKING:
    from opensearchpy import AsyncOpenSearch


class FastJSONSerializer(JSONSerializer):
    """orjson instead of json: an ingest sends millions of vector components, and the standard
    library spends about ten times longer turning them into text (holding the GIL meanwhile)."""

    _OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

    def dumps(self, data: Any) -> str:
        if isinstance(data, str):
            return data
        return orjson.dumps(data, default=self.default, option=self._OPTIONS).decode()

    def loads(self, s: str) -> Any:
        return orjson.loads(s)


class ConfiguredRequestsConnection(RequestsHttpConnection):
    """The requests-based connection that SigV4 signing needs, with exactly the configured TLS
    settings: by default requests lets REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE from the environment
    replace `ca_certs`, and even turn verification back on after verify_certs=false. Like the
    default connection, it then reads neither proxies nor .netrc from the environment."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session.trust_env = False


def client_options(settings: LtrrSettings, *, asynchronous: bool = False) -> dict[str, Any]:
    """Keyword arguments for OpenSearch(...), or AsyncOpenSearch(...), from the settings."""
    options: dict[str, Any] = {
        "hosts": settings.hosts,
        "verify_certs": settings.verify_certs,
        "ssl_show_warn": settings.verify_certs,
        "timeout": settings.request_timeout_s,
        "max_retries": settings.max_retries,
        # A request that timed out may still be applied (a memory update would count twice), and a
        # search must fail within its deadline; refused connections still move to the next node.
        "retry_on_timeout": False,
        "maxsize" if asynchronous else "pool_maxsize": 32,
        "serializer": FastJSONSerializer(),
    }
    for name in ("ca_certs", "client_cert", "client_key"):
        path = getattr(settings, name)
        if path is not None:
            if not path.is_file():
                raise ConfigError(f"{name} file not found: {path}")
            options[name] = str(path)
    if settings.aws_region:
        options["http_auth"] = _aws_auth(settings, asynchronous)
        if not asynchronous:
            options["connection_class"] = ConfiguredRequestsConnection
    elif settings.username:
        if settings.password is None:
            raise ConfigError("username is set but password is not (LTRR_PASSWORD)")
        options["http_auth"] = (settings.username, settings.password.get_secret_value())
    return options


class _RedactSessionToken(logging.Filter):
    """botocore logs every canonical request it signs at DEBUG, the AWS session token in it."""

    _TOKEN = re.compile(r"(x-amz-security-token:)\S+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._TOKEN.sub(r"\1[redacted]", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_REDACT_SESSION_TOKEN = _RedactSessionToken()


def _aws_auth(settings: LtrrSettings, asynchronous: bool) -> Any:
    try:
        import boto3
    except ImportError:
        raise ConfigError("AWS SigV4 signing needs boto3: pip install 'ltrr-os[aws]'") from None
    logging.getLogger("botocore.auth").addFilter(_REDACT_SESSION_TOKEN)
    credentials = boto3.Session().get_credentials()
    if credentials is None:
        raise ConfigError("aws_region is set but no AWS credentials were found")
    region = str(settings.aws_region)
    if asynchronous:  # importable only with aiohttp installed
        from opensearchpy import AWSV4SignerAsyncAuth

        return AWSV4SignerAsyncAuth(credentials, region, settings.aws_service)
    from opensearchpy import AWSV4SignerAuth

    return AWSV4SignerAuth(credentials, region, settings.aws_service)


def connect(settings: LtrrSettings) -> OpenSearch:
    """A synchronous client; it does not contact the cluster until first used."""
    return OpenSearch(**client_options(settings))


def opensearch_error(exc: OpenSearchException, url: str = "") -> OpenSearchUnavailableError:
    """What went wrong talking to OpenSearch (at `url`) and what to do about it, in one line:
    never the request (it may hold documents) nor a credential."""
    where = f" at {url}" if url else ""
    if isinstance(exc, SSLError):
        cause = _cause(exc)
        hint = (
            ". If a private CA signed its certificate, set ca_certs (LTRR_CA_CERTS) to that CA's "
            "PEM file"
            if "CERTIFICATE_VERIFY_FAILED" in cause
            else ""
        )
        return OpenSearchUnavailableError(f"TLS with OpenSearch{where} failed: {cause}{hint}")
    if isinstance(exc, ConnectionTimeout):
        return OpenSearchUnavailableError(
            f"OpenSearch{where} did not answer in time: {_cause(exc)}"
        )
    if isinstance(exc, ConnectionError):
        return OpenSearchUnavailableError(
            f"cannot reach OpenSearch{where}: {_cause(exc)}. Is it running? "
            "(scripts/opensearch-local start, or docker compose up -d)"
        )
    if isinstance(exc, AuthenticationException):
        return OpenSearchUnavailableError(
            f"OpenSearch{where} refused the credentials (HTTP 401): check username and password "
            "(LTRR_USERNAME, LTRR_PASSWORD) or the AWS credentials"
        )
    if isinstance(exc, AuthorizationException):
        return OpenSearchUnavailableError(
            f"OpenSearch{where} denied the request (HTTP 403): the user lacks a permission "
            "ltrr-os needs"
        )
    if isinstance(exc, TransportError):
        return OpenSearchUnavailableError(
            f"OpenSearch{where} answered HTTP {exc.status_code} ({_kind(exc.error)})"
        )
    return OpenSearchUnavailableError(f"OpenSearch client error: {type(exc).__name__}")


def _cause(exc: ConnectionError) -> str:
    """The innermost reason of a connection error (urllib3 wraps it several times)."""
    cause: BaseException | None = exc.info if isinstance(exc.info, BaseException) else None
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        inner = cause.__cause__ or cause.__context__
        if inner is None:
            break
        cause = inner
    text = str(cause) if cause is not None else str(exc.error)
    return " ".join(text.split())[:300]


def _kind(error: object) -> str:
    """The error type OpenSearch named; a raw response body may quote documents."""
    text = str(error)
    return text if text.replace("_", "").isalpha() else "unnamed error"


def connect_async(settings: LtrrSettings) -> AsyncOpenSearch:
    """An asyncio client (opensearch-py's aiohttp transport); it does not contact the cluster
    until first used."""
    try:
        from opensearchpy import AsyncOpenSearch
    except ImportError:
        raise ConfigError(
            "the asyncio client needs aiohttp: pip install 'ltrr-os[async]'"
        ) from None
    return AsyncOpenSearch(**client_options(settings, asynchronous=True))
