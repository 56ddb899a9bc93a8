import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tessera.core import TesseraSettings
from tessera.core.server import ServiceServer
from tessera.proto.diagnostics.v1 import diagnostics_pb2, diagnostics_pb2_grpc


@dataclass(frozen=True)
class Identity:
    cert: bytes
    key: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    common_name: str,
    *,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    server: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer_cert.subject if issuer_cert else _name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256()), key


def _pem(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Identity:
    return Identity(
        cert=cert.public_bytes(serialization.Encoding.PEM),
        key=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


@dataclass(frozen=True)
class Pki:
    ca: bytes
    server: Identity
    client: Identity
    stranger: Identity  # a client certificate from another CA
    directory: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = _issue("Tessera Test CA", issuer=None)
    other_ca = _issue("Other CA", issuer=None)
    pki = Pki(
        ca=_pem(*ca).cert,
        server=_pem(*_issue("localhost", issuer=ca, server=True)),
        client=_pem(*_issue("client", issuer=ca)),
        stranger=_pem(*_issue("stranger", issuer=other_ca)),
        directory=directory,
    )
    (directory / "server.crt").write_bytes(pki.server.cert)
    (directory / "server.key").write_bytes(pki.server.key)
    (directory / "ca.crt").write_bytes(pki.ca)
    return pki


def _settings(pki: Pki, *, mutual: bool) -> TesseraSettings:
    return TesseraSettings(
        tls_cert_file=pki.directory / "server.crt",
        tls_key_file=pki.directory / "server.key",
        tls_client_ca_file=pki.directory / "ca.crt" if mutual else None,
    )


async def _echo(channel: grpc.aio.Channel) -> bytes:
    stub = diagnostics_pb2_grpc.DiagnosticsStub(channel)
    response = await stub.Echo(diagnostics_pb2.EchoRequest(payload=b"secure"), timeout=3)
    return response.payload


def _secure(address: str, pki: Pki, identity: Identity | None = None) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca,
        private_key=identity.key if identity else None,
        certificate_chain=identity.cert if identity else None,
    )
    return grpc.aio.secure_channel(address, credentials)


async def test_tls_server_answers_clients_that_trust_its_ca(pki):
    async with ServiceServer(_settings(pki, mutual=False), []) as server:
        async with _secure(server.address, pki) as channel:
            assert await _echo(channel) == b"secure"
        async with grpc.aio.insecure_channel(server.address) as plaintext:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await _echo(plaintext)
            assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_requires_a_client_certificate_from_the_ca(pki):
    async with ServiceServer(_settings(pki, mutual=True), []) as server:
        async with _secure(server.address, pki, pki.client) as channel:
            assert await _echo(channel) == b"secure"
        for identity in (None, pki.stranger):
            async with _secure(server.address, pki, identity) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await _echo(channel)
                assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
