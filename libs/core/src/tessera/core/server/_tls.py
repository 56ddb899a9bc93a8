"""Server credentials from the TLS settings."""

from __future__ import annotations

from pathlib import Path

import grpc

from tessera.core._errors import ConfigError
from tessera.core._settings import TesseraSettings


def server_credentials(settings: TesseraSettings) -> grpc.ServerCredentials | None:
    """Build the server's TLS credentials, or None for plaintext.

    Certificate and key make the server speak TLS; a client CA as well makes it require client
    certificates that chain to that CA (mutual TLS). Reads files: call it off the event loop.

    Args:
        settings: Supplies `tls_cert_file`, `tls_key_file` and `tls_client_ca_file`.

    Returns:
        Credentials for `grpc.aio.Server.add_secure_port`, or None when TLS is not configured.

    Raises:
        ConfigError: A file cannot be read.

    """
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    certificate = _read("tls_cert_file", settings.tls_cert_file)
    key = _read("tls_key_file", settings.tls_key_file)
    client_ca = None
    if settings.tls_client_ca_file is not None:
        client_ca = _read("tls_client_ca_file", settings.tls_client_ca_file)
    return grpc.ssl_server_credentials(
        [(key, certificate)],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def _read(setting: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigError(
            f"{setting}: cannot read {path}: {error.strerror}", source=setting
        ) from error
