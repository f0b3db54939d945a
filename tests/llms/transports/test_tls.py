"""TLS is verified: a server whose certificate nobody vouches for is refused, naming the reason."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import litellm
import pytest

from lmi import LiteLLMModel, ModelCallError

cryptography = pytest.importorskip("cryptography")


def _self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class _Answer(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.server.posts += 1  # type: ignore[attr-defined]
        self.send_response(500)
        self.end_headers()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[HTTPServer]:
    cert, key = _self_signed(tmp_path)
    server = HTTPServer(("127.0.0.1", 0), _Answer)
    server.posts = 0  # type: ignore[attr-defined]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


async def test_an_unverifiable_certificate_is_refused_before_anything_is_sent(tls_server: HTTPServer) -> None:
    port = tls_server.server_address[1]
    config = {
        "api_base": f"https://127.0.0.1:{port}/v1",
        "api_key": "sk-test",
        "transport": "native",
        "num_retries": 0,
        "timeout": 5,
    }
    with pytest.raises(ModelCallError) as raised:
        await LiteLLMModel(name="gpt-4o-mini", config=config).call_single("hi")
    ((_, error),) = raised.value.attempts
    assert isinstance(error, litellm.APIConnectionError)
    assert "certificate" in str(error).lower()
    assert tls_server.posts == 0  # type: ignore[attr-defined]
