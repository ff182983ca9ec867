"""TLS with client certificates and password authentication against a mosquitto configured by
the test: its own CA, a server certificate for 127.0.0.1, a client certificate per client."""

import json
import shutil
import subprocess

import pytest

from gateway.broker import Mosquitto, free_port
from gateway.config import ConfigError, validate_config
from gateway.mqtt import MqttPublisher
from gateway.outbox import Outbox

NAMES = {"enterprise": "acme", "site": "s1", "area": "packaging", "line": "l1"}


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def issue(folder, name, subject, ca=True, san=None):
    """An EC key and a certificate signed by the test CA (or the CA itself)."""
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key"]
    if ca:
        openssl("req", "-x509", *key, "-out", f"{name}.crt", "-days", "2", "-subj", subject, cwd=folder)
        return
    openssl("req", *key, "-out", f"{name}.csr", "-subj", subject, cwd=folder)
    (folder / f"{name}.ext").write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    signed = ["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-extfile", f"{name}.ext"]
    openssl("x509", "-req", "-in", f"{name}.csr", *signed, "-out", f"{name}.crt", "-days", "2", cwd=folder)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    assert shutil.which("openssl"), "openssl is missing: run the tests through ./dev test"
    folder = tmp_path_factory.mktemp("pki")
    issue(folder, "ca", "/CN=udigate test CA")
    issue(folder, "server", "/CN=broker", ca=False, san="IP:127.0.0.1,DNS:localhost")
    issue(folder, "client", "/CN=udigate-l1", ca=False)
    issue(folder, "mes", "/CN=mes", ca=False)
    (folder / "password").write_text("s3cret line password\n")
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(folder / "users"), "udigate", "s3cret line password"])
    subprocess.run(["mosquitto_passwd", "-b", str(folder / "users"), "mes", "mes-password"], check=True)
    return folder


@pytest.fixture
def secure_broker(pki):
    broker = Mosquitto(
        "127.0.0.1",
        free_port(),
        listener_config=(
            f"cafile {pki}/ca.crt\ncertfile {pki}/server.crt\nkeyfile {pki}/server.key\n"
            f"require_certificate true\npassword_file {pki}/users\nallow_anonymous false\n"
        ),
    )
    broker.start()
    yield broker
    broker.close()


def tls_config(pki, **changes):
    raw = {
        "username": "udigate",
        "password_file": str(pki / "password"),
        "tls": {
            "enabled": True,
            "ca_file": str(pki / "ca.crt"),
            "cert_file": str(pki / "client.crt"),
            "key_file": str(pki / "client.key"),
        },
    }
    return validate_config({"mqtt": raw | changes}).mqtt


def run_publisher(tmp_path, config, broker, records=10):
    publisher = MqttPublisher(config, NAMES, broker.host, broker.port, Outbox(tmp_path / "o.db", 10**7))
    publisher.start()
    for i in range(1, records + 1):
        publisher.publish_record("verified", f"run/{i}", {"record_id": f"run/{i}", "item_id": i})
    publisher.close(timeout=5)
    return publisher


def test_records_over_tls_with_client_certificate_and_password(tmp_path, pki, secure_broker, subscribe):
    mes = subscribe(
        secure_broker.host,
        secure_broker.port,
        "udigate/#",
        auth=("mes", "mes-password"),
        ca_certs=str(pki / "ca.crt"),
        certfile=str(pki / "mes.crt"),
        keyfile=str(pki / "mes.key"),
    )
    publisher = run_publisher(tmp_path, tls_config(pki), secure_broker)
    assert publisher.outbox.count == 0 and publisher.acknowledged == 10
    assert mes.wait_for(lambda: len(mes.json_on("/verified")) == 10)
    assert [r["item_id"] for r in mes.json_on("/verified")] == list(range(1, 11))
    assert json.loads(mes.messages[-1][1])["state"] == "offline"  # retained status, over TLS too


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"password": "wrong", "password_file": None}, "refused the connection: Not authorized"),
        ({"tls": {"enabled": True}}, "cannot connect"),  # no client certificate, system CAs
    ],
)
def test_refused_connections_keep_the_records_and_say_why(tmp_path, pki, secure_broker, changes, problem):
    base = tls_config(pki).model_dump(mode="json", exclude_none=True)
    config = validate_config({"mqtt": {k: v for k, v in (base | changes).items() if v is not None}}).mqtt
    publisher = run_publisher(tmp_path, config, secure_broker, records=3)
    assert problem in publisher.problem
    assert publisher.outbox.count == 3 and publisher.acknowledged == 0  # kept for the next start


def test_tls_configuration_problems_name_the_key(tmp_path, pki):
    with pytest.raises(ConfigError) as error:
        validate_config({"mqtt": {"tls": {"enabled": True, "ca_file": str(tmp_path / "missing.pem")}}})
    assert "mqtt.tls.ca_file" in str(error.value) and "missing.pem" in str(error.value)
    with pytest.raises(ConfigError, match="cert_file and mqtt.tls.key_file together"):
        validate_config({"mqtt": {"tls": {"cert_file": str(pki / "client.crt")}}})
    with pytest.raises(ConfigError, match="mqtt.username with mqtt.password"):
        validate_config({"mqtt": {"password_file": str(pki / "password")}})
