import pydantic
import pytest

from tessera.core import SERVICE_PORTS, ConfigError, Port, ServicePorts, TesseraSettings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    import os

    for name in list(os.environ):
        if name.upper().startswith("TESSERA_"):
            monkeypatch.delenv(name)


def _write(tmp_path, name):
    path = tmp_path / name
    path.write_text("-----BEGIN PLACEHOLDER-----\n")
    return path


def test_defaults_live_in_the_base_class():
    settings = TesseraSettings()
    assert (settings.host, settings.port, settings.metrics_port) == ("127.0.0.1", 0, None)
    assert (settings.log_format, settings.log_level, settings.trace_exporter) == (
        "json",
        "INFO",
        "none",
    )
    assert settings.etcd_endpoints == ["127.0.0.1:2379"]
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.auth_token is None
    assert not settings.tls_enabled
    assert settings.shutdown_grace_s == 10.0
    assert settings.busy_poll_us == 0


def test_values_come_from_tessera_environment_variables(monkeypatch):
    monkeypatch.setenv("TESSERA_PORT", "50099")
    monkeypatch.setenv("TESSERA_METRICS_PORT", "0")
    monkeypatch.setenv("tessera_log_level", "debug")
    monkeypatch.setenv("TESSERA_ETCD_ENDPOINTS", "etcd-1:2379, etcd-2:2379,")
    monkeypatch.setenv("TESSERA_AUTH_TOKEN", "s3cret")
    monkeypatch.setenv("TESSERA_TRACE_EXPORTER", "otlp")
    settings = TesseraSettings.from_env()
    assert settings.port == 50099
    assert settings.metrics_port == 0
    assert settings.log_level == "DEBUG"
    assert settings.etcd_endpoints == ["etcd-1:2379", "etcd-2:2379"]
    assert settings.auth_token is not None
    assert settings.auth_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    assert settings.trace_exporter == "otlp"


def test_etcd_endpoints_also_accept_a_json_list(monkeypatch):
    monkeypatch.setenv("TESSERA_ETCD_ENDPOINTS", '["a:1", "b:2"]')
    assert TesseraSettings().etcd_endpoints == ["a:1", "b:2"]


def test_an_empty_auth_token_means_no_authentication(monkeypatch):
    monkeypatch.setenv("TESSERA_AUTH_TOKEN", "")
    assert TesseraSettings().auth_token is None


def test_keyword_arguments_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("TESSERA_PORT", "50099")
    assert TesseraSettings(port=7).port == 7


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("TESSERA_PORT", "70000", "port"),
        ("TESSERA_METRICS_PORT", "-1", "metrics_port"),
        ("TESSERA_LOG_LEVEL", "LOUD", "log_level"),
        ("TESSERA_LOG_FORMAT", "xml", "log_format"),
        ("TESSERA_TRACE_EXPORTER", "jaeger", "trace_exporter"),
        ("TESSERA_ETCD_ENDPOINTS", "no-port", "etcd_endpoints"),
        ("TESSERA_SHUTDOWN_GRACE_S", "-1", "shutdown_grace_s"),
        ("TESSERA_BUSY_POLL_US", "-1", "busy_poll_us"),
        ("TESSERA_BUSY_POLL_US", "10001", "busy_poll_us"),
    ],
)
def test_invalid_values_are_reported_by_field_and_variable(monkeypatch, variable, value, field):
    monkeypatch.setenv(variable, value)
    with pytest.raises(pydantic.ValidationError) as raised:
        TesseraSettings()
    assert [error["loc"][0] for error in raised.value.errors()] == [field]
    with pytest.raises(ConfigError, match=rf"{variable} \({field}\)") as config_error:
        TesseraSettings.from_env()
    assert config_error.value.source == "environment"


def test_validation_errors_never_echo_the_auth_token(monkeypatch):
    monkeypatch.setenv("TESSERA_AUTH_TOKEN", "s3cret-token")
    monkeypatch.setenv("TESSERA_PORT", "nope")
    with pytest.raises(pydantic.ValidationError) as raised:
        TesseraSettings()
    assert "s3cret-token" not in str(raised.value)


def test_tls_certificate_without_key_names_the_missing_field(tmp_path):
    cert = _write(tmp_path, "cert.pem")
    with pytest.raises(pydantic.ValidationError, match="tls_key_file is not") as raised:
        TesseraSettings(tls_cert_file=cert)
    assert raised.value.errors()[0]["loc"] == ("tls_key_file",)
    with pytest.raises(ConfigError, match="TESSERA_TLS_KEY_FILE"):
        TesseraSettings.from_env(tls_cert_file=cert)


def test_tls_key_without_certificate_names_the_missing_field(tmp_path):
    with pytest.raises(pydantic.ValidationError, match="tls_cert_file is not"):
        TesseraSettings(tls_key_file=_write(tmp_path, "key.pem"))


def test_client_ca_without_server_certificate_is_rejected(tmp_path):
    with pytest.raises(pydantic.ValidationError) as raised:
        TesseraSettings(tls_client_ca_file=_write(tmp_path, "ca.pem"))
    assert raised.value.errors()[0]["loc"] == ("tls_client_ca_file",)


def test_missing_tls_file_names_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"TESSERA_TLS_CERT_FILE \(tls_cert_file\)"):
        TesseraSettings.from_env(
            tls_cert_file=tmp_path / "absent.pem", tls_key_file=_write(tmp_path, "key.pem")
        )


def test_certificate_key_and_client_ca_turn_on_mutual_tls(tmp_path):
    tls = TesseraSettings(
        tls_cert_file=_write(tmp_path, "cert.pem"), tls_key_file=_write(tmp_path, "key.pem")
    )
    assert tls.tls_enabled
    assert not tls.mutual_tls
    mutual = tls.model_copy(update={"tls_client_ca_file": _write(tmp_path, "ca.pem")})
    assert mutual.tls_enabled
    assert mutual.mutual_tls


def test_settings_are_immutable():
    with pytest.raises(pydantic.ValidationError):
        TesseraSettings().port = 1  # type: ignore[misc]


def test_service_ports_table_matches_the_design():
    assert dict(SERVICE_PORTS) == {
        "registry": ServicePorts(50051, 9101),
        "lock": ServicePorts(50052, 9102),
        "ratelimit": ServicePorts(50053, 9103),
        "governance": ServicePorts(50054, 9104),
    }


_LOCK = SERVICE_PORTS["lock"]


class LockSettings(TesseraSettings):
    service_name: str = "tessera-lock"
    port: Port = _LOCK.port
    metrics_port: Port | None = _LOCK.metrics_port
    session_ttl_s: float = 10.0


def test_a_service_subclass_takes_its_ports_from_the_table(monkeypatch):
    settings = LockSettings()
    assert (settings.port, settings.metrics_port) == (50052, 9102)
    assert (
        LockSettings.model_fields["port"].default == 50052
    )  # introspection shows the real default
    monkeypatch.setenv("TESSERA_PORT", "6000")
    monkeypatch.setenv("TESSERA_SESSION_TTL_S", "2.5")
    overridden = LockSettings.from_env()
    assert (overridden.port, overridden.session_ttl_s) == (6000, 2.5)
    monkeypatch.setenv("TESSERA_PORT", "-5")
    with pytest.raises(ConfigError, match="TESSERA_PORT"):
        LockSettings.from_env()
