"""One place that turns settings into an opensearch-py client."""

from __future__ import annotations

from typing import Any

import orjson
from opensearchpy import OpenSearch, RequestsHttpConnection
from opensearchpy.serializer import JSONSerializer

from .._errors import ConfigError
from ..config import LtrrSettings


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


def client_options(settings: LtrrSettings) -> dict[str, Any]:
    """Keyword arguments for OpenSearch(...) (and AsyncOpenSearch) from the settings."""
    options: dict[str, Any] = {
        "hosts": settings.hosts,
        "verify_certs": settings.verify_certs,
        "ssl_show_warn": settings.verify_certs,
        "timeout": settings.request_timeout_s,
        "max_retries": settings.max_retries,
        "retry_on_timeout": settings.max_retries > 0,
        "pool_maxsize": 32,
        "serializer": FastJSONSerializer(),
    }
    for name in ("ca_certs", "client_cert", "client_key"):
        path = getattr(settings, name)
        if path is not None:
            if not path.is_file():
                raise ConfigError(f"{name} file not found: {path}")
            options[name] = str(path)
    if settings.aws_region:
        options["http_auth"] = _aws_auth(settings)
        options["connection_class"] = RequestsHttpConnection
    elif settings.username:
        if settings.password is None:
            raise ConfigError("username is set but password is not (LTRR_PASSWORD)")
        options["http_auth"] = (settings.username, settings.password.get_secret_value())
    return options


def _aws_auth(settings: LtrrSettings) -> Any:
    try:
        import boto3
    except ImportError:
        raise ConfigError("AWS SigV4 signing needs boto3: pip install 'ltrr-os[aws]'") from None
    from opensearchpy import AWSV4SignerAuth

    credentials = boto3.Session().get_credentials()
    if credentials is None:
        raise ConfigError("aws_region is set but no AWS credentials were found")
    return AWSV4SignerAuth(credentials, settings.aws_region, settings.aws_service)


def connect(settings: LtrrSettings) -> OpenSearch:
    """A synchronous client; it does not contact the cluster until first used."""
    return OpenSearch(**client_options(settings))
