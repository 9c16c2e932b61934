"""TLS, basic auth and AWS SigV4 against real nodes, credentials kept out of logs and output, and
limits enforced before anything reaches OpenSearch.

TLS and basic auth: a node of our own with OpenSearch's security plugin (scripts/opensearch-local
--security: HTTPS with certificates of a CA made for the cluster), and a user created through the
plugin's REST API. SigV4 is AWS's, so the node behind it is the session's plain node, reached
through a small TLS reverse proxy (a throw-away CA from trustme) that checks every request's
signature with botocore.
"""

from __future__ import annotations

import base64
import hmac
import http.client
import json
import logging
import re
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import certifi
import pytest
import trustme
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from opensearchpy import OpenSearch, Transport
from pydantic import SecretStr
from typer.testing import CliRunner

from ltrr_os import LTRRClient, LtrrSettings, OpenSearchUnavailableError, QueryError
from ltrr_os.cli import app
from ltrr_os.embedding import Encoder
from ltrr_os.opensearch import connect
from ltrr_os.policy import Decision, DecisionContext, Policy, StrategyChoice

from .conftest import free_ports, load_music, local_nodes
from .test_faults import click

USER, PASSWORD = "ltrr-app", "Ltrr-s3cret-Pa55word!9"
AWS_KEY, AWS_SECRET, AWS_TOKEN = (
    "AKIDLTRRTEST",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYTESTKEY",
    "FQoTESTTOKEN",
)
REGION = "eu-west-1"
SECRETS = [
    PASSWORD,
    base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
    AWS_SECRET,
    AWS_TOKEN,
]
Check = Callable[[BaseHTTPRequestHandler, bytes], bool]
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: AuthProxy

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.server.check(self, body):
            self.server.refused += 1
            error = {"error": {"type": "security_exception", "reason": "unauthorized"}}
            self._reply(401, [("Content-Type", "application/json")], json.dumps(error).encode())
            return
        self.server.passed += 1
        headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() not in _HOP_BY_HOP and name.lower() != "authorization"
        }
        upstream = http.client.HTTPConnection(*self.server.upstream, timeout=60)
        try:
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            self._reply(response.status, kept, data)
        finally:
            upstream.close()

    def _reply(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle  # noqa: N815 (http.server's names)

    def log_message(self, format: str, *args: Any) -> None:
        del format, args  # quiet


class AuthProxy(ThreadingHTTPServer):
    """TLS in front of a plain node, letting through only requests that pass `check`."""

    daemon_threads = True

    def __init__(self, upstream: str, context: ssl.SSLContext, check: Check) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        host, _, port = upstream.removeprefix("http://").partition(":")
        self.upstream = (host, int(port))
        self.check = check
        self.passed = self.refused = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"


def sigv4(handler: BaseHTTPRequestHandler, body: bytes) -> bool:
    """Recompute the signature from what arrived, over the headers the client says it signed."""
    found = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=([^/]+)/[0-9]{8}/([^/]+)/([^/]+)/aws4_request, "
        r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})",
        handler.headers.get("Authorization", ""),
    )
    if found is None or found.group(1, 2, 3) != (AWS_KEY, REGION, "es"):
        return False
    signed = found.group(4).split(";")
    if not {"host", "x-amz-date", "x-amz-security-token"} <= set(signed):
        return False
    request = AWSRequest(
        method=handler.command,
        url=f"https://{handler.headers['Host']}{handler.path}",
        data=body,
        headers={name: handler.headers[name] for name in signed},
    )
    request.context["timestamp"] = handler.headers["X-Amz-Date"]
    signer = SigV4Auth(Credentials(AWS_KEY, AWS_SECRET, AWS_TOKEN), "es", REGION)
    expected = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    return hmac.compare_digest(expected, found.group(5))


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A server context with a certificate for 127.0.0.1, and the PEM of the CA that signed it."""
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    bundle = tmp_path_factory.mktemp("tls") / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    return context, bundle


def _serve(proxy: AuthProxy) -> Iterator[AuthProxy]:
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()
    thread.join(10)


@pytest.fixture(scope="module")
def sigv4_proxy(settings: LtrrSettings, tls: tuple[ssl.SSLContext, Path]) -> Iterator[AuthProxy]:
    yield from _serve(AuthProxy(settings.hosts[0], tls[0], sigv4))


@pytest.fixture(scope="module")
def secured_node(settings: LtrrSettings, encoder: Encoder) -> Iterator[LtrrSettings]:
    """A node with the security plugin, an application user of ours (created as the plugin's
    demo admin), and a small catalog bootstrapped and ingested by that user over TLS."""
    with local_nodes(free_ports(1, start=9600), security=True) as node:
        admin = OpenSearch(
            hosts=[node.url()], http_auth=("admin", "admin"), ca_certs=str(node.ca())
        )
        admin.transport.perform_request(
            "PUT",
            f"/_plugins/_security/api/internalusers/{USER}",
            body={"password": PASSWORD, "backend_roles": ["admin"]},
        )
        own = settings.model_copy(
            update={
                "opensearch_url": node.url(),
                "index_prefix": f"{settings.index_prefix}secured-",
                "username": USER,
                "password": SecretStr(PASSWORD),
                "ca_certs": node.ca(),
            }
        )
        load_music(connect(own), own, encoder, {"Queen"})
        yield own
        admin.indices.delete(index=f"{own.index_prefix}*", expand_wildcards="all")


@pytest.fixture
def secured(secured_node: LtrrSettings, tmp_path: Path) -> LtrrSettings:
    """The secured node's catalog, with the right credentials and its CA."""
    return secured_node.model_copy(
        update={"model_dir": tmp_path / "models", "spool_dir": tmp_path / "spool"}
    )


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Everything logged at DEBUG, the opensearch-py request tracer (which logs only to its own
    handlers) included."""
    tracer = logging.getLogger("opensearchpy.trace")
    tracer.addHandler(caplog.handler)
    tracer.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    yield caplog
    tracer.removeHandler(caplog.handler)
    tracer.setLevel(logging.NOTSET)


def ltrr_cli(settings: LtrrSettings, *args: str, password: str = PASSWORD) -> Any:
    """Run `ltrr` as a user would configure it: from the environment."""
    environment = {
        "LTRR_OPENSEARCH_URL": settings.opensearch_url,
        "LTRR_INDEX_PREFIX": settings.index_prefix,
        "LTRR_USERNAME": USER,
        "LTRR_PASSWORD": password,
        "LTRR_CA_CERTS": str(settings.ca_certs) if settings.ca_certs else None,
        "LTRR_MAX_RETRIES": "0",
    }
    return CliRunner().invoke(app, list(args), env=environment)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def test_tls_verification_is_on_by_default_and_refuses_an_untrusted_certificate(
    secured: LtrrSettings, encoder: Encoder
) -> None:
    untrusted = secured.model_copy(update={"ca_certs": None})
    with pytest.raises(OpenSearchUnavailableError, match="CERTIFICATE_VERIFY_FAILED") as error:
        LTRRClient(untrusted, encoder=encoder)
    assert "ca_certs" in str(error.value)
    result = ltrr_cli(untrusted, "doctor")
    assert result.exit_code == 2
    assert "certificate verify failed" in result.output
    assert "Traceback" not in result.output


def test_with_its_ca_bundle_search_and_feedback_work_over_tls_with_basic_auth(
    secured: LtrrSettings, encoder: Encoder
) -> None:
    with LTRRClient(secured, encoder=encoder) as client:
        response = client.search("queen", limit=5)
        assert response.results
        assert client.feedback([click(response)]).accepted == 1
        assert client.flush() == 0
    doctor = ltrr_cli(secured, "doctor")
    assert doctor.exit_code == 0, doctor.output


@pytest.mark.parametrize("password", ["wr0ng-Pa55word!", ""])
def test_a_wrong_or_missing_password_is_a_clear_error_that_never_echoes_it(
    secured: LtrrSettings, encoder: Encoder, password: str
) -> None:
    update: dict[str, Any] = (
        {"password": SecretStr(password)} if password else {"username": None, "password": None}
    )
    with pytest.raises(OpenSearchUnavailableError, match=r"refused the credentials \(HTTP 401\)"):
        LTRRClient(secured.model_copy(update=update), encoder=encoder)
    result = ltrr_cli(secured, "search", "queen", password=password)
    assert result.exit_code == 2
    assert (
        "refused the credentials (HTTP 401)" if password else "password is not"
    ) in result.output
    assert not password or password not in result.output
    assert "Traceback" not in result.output


def test_credentials_reach_no_log_line_and_no_output(
    secured: LtrrSettings, encoder: Encoder, debug_logs: pytest.LogCaptureFixture
) -> None:
    settings = secured
    with LTRRClient(settings, encoder=encoder) as client:
        response = client.search("queen", limit=5)
        client.feedback([click(response)])
        client.flush()
    outputs = [ltrr_cli(settings, command).output for command in ("doctor", "version")]
    assert any(r.name == "opensearchpy.trace" for r in debug_logs.records)  # bodies logged
    assert_no_secret(
        debug_logs.text,
        *(str(r.args) for r in debug_logs.records),
        *outputs,
        repr(settings),
        str(settings),
        settings.model_dump_json(),
    )


def test_sigv4_signs_every_request_verifies_tls_and_keeps_the_keys_out_of_logs(
    music_settings: LtrrSettings,
    sigv4_proxy: AuthProxy,
    tls: tuple[ssl.SSLContext, Path],
    encoder: Encoder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": AWS_KEY,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "AWS_SESSION_TOKEN": AWS_TOKEN,
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "REQUESTS_CA_BUNDLE": certifi.where(),  # requests would let it replace ca_certs
    }.items():
        monkeypatch.setenv(name, value)
    settings = music_settings.model_copy(
        update={
            "opensearch_url": sigv4_proxy.url,
            "aws_region": REGION,
            "model_dir": tmp_path / "models",
            "spool_dir": tmp_path / "spool",
        }
    )
    with pytest.raises(OpenSearchUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
        LTRRClient(settings, encoder=encoder)
    settings = settings.model_copy(update={"ca_certs": tls[1]})
    with LTRRClient(settings, encoder=encoder) as client:
        response = client.search("queen", limit=5)
        assert response.results
        assert client.feedback([click(response)]).accepted == 1
        assert client.flush() == 0
    assert (sigv4_proxy.passed > 0, sigv4_proxy.refused) == (True, 0)
    assert_no_secret(debug_logs.text, *(str(r.args) for r in debug_logs.records))


class RecordingTransport(Transport):
    """The real transport, recording the path and body of every `_msearch/template`."""

    searches: ClassVar[list[str]] = []

    def perform_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if url.endswith("_msearch/template"):
            RecordingTransport.searches.append(str(kwargs.get("body")))
        return super().perform_request(method, url, *args, **kwargs)


class Greedy(Policy):
    """A plugged-in policy that ignores the candidate budget."""

    name = "greedy"

    def decide(self, context: DecisionContext) -> Decision:
        return Decision(
            policy=self.name,
            choices=[
                StrategyChoice(strategy=s, size=1000, probability=1.0)
                for s in ("lexical", "vector")
            ],
        )


def test_limits_hold_before_anything_reaches_opensearch(
    music_settings: LtrrSettings, encoder: Encoder, tmp_path: Path
) -> None:
    settings = music_settings.model_copy(
        update={
            "model_dir": tmp_path / "models",
            "spool_dir": tmp_path / "spool",
            "max_query_chars": 40,
            "max_results": 20,
            "candidate_budget": 60,
        }
    )
    opensearch = OpenSearch(hosts=settings.hosts, transport_class=RecordingTransport)
    with LTRRClient(settings, opensearch=opensearch, encoder=encoder, policy=Greedy()) as client:
        RecordingTransport.searches.clear()
        for query, limit in (("x" * 41, 10), ("queen", 21), ("queen", 0)):
            with pytest.raises(QueryError):
                client.search(query, limit=limit)
        assert RecordingTransport.searches == []
        response = client.search("queen", limit=20)
    assert response.decision.policy == "rules"  # the greedy plan was refused
    # The plan's round trip, and its expansion's when the plan runs one: within the budget.
    assert 1 <= len(RecordingTransport.searches) <= 2
    sizes = [
        json.loads(line)["params"]["size"]
        for body in RecordingTransport.searches
        for line in body.splitlines()[1::2]
    ]
    assert 0 < sum(sizes) <= 60
