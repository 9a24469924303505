"""A secured stream, as real alert streams are: the local broker with a SASL_SSL listener (SCRAM
users created at format time; a throwaway CA, server and client certificates made here with openssl),
alerts read from it and results written to another cluster (the session's plain broker)."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from models.errors import BrokerError
from models.registry import Registry
from service.app import create_app
from service.runtime import make_worker
from service.settings import Settings
from service.store import Query as StoreQuery
from service.store import Store
from streaming import local_broker
from streaming.decode import Decoder
from streaming.kafka import create_topics, produce_all, read_topic
from tests.test_worker import simulated_packets

pytestmark = pytest.mark.kafka
PASSWORD = "alice-s3cret-pw"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed (Debian package openssl)")
    d = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=alert-classifier test CA", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    _openssl("pkcs12", "-export", "-in", "server.pem", "-inkey", "server.key", "-out", "server.p12",
             "-passout", "pass:storepw", "-name", "kafka", cwd=d)
    return d


@pytest.fixture(scope="module")
def secured(certificates, settings):
    """A broker whose SASL_SSL listener wants SCRAM credentials and a client certificate."""
    handle = local_broker.start(settings.kafka_cache_dir, sasl_ssl=local_broker.SaslSsl(
        {"alice": PASSWORD}, str(certificates / "server.p12"), "storepw",
        client_ca=str(certificates / "ca.pem")))
    yield handle
    local_broker.stop(handle)


def _settings(secured, certificates, kafka_bootstrap, tmp_path, password=PASSWORD, **extra) -> Settings:
    tag = uuid.uuid4().hex[:8]
    values = dict(
        kafka_bootstrap_servers=secured.secure_bootstrap_servers, kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="alice", kafka_sasl_password=password,
        kafka_ssl_ca_location=certificates / "ca.pem",
        kafka_ssl_certificate_location=certificates / "client.pem",
        kafka_ssl_key_location=certificates / "client.key",
        # results and dead letters to another cluster: the session's plain broker
        output_kafka_bootstrap_servers=kafka_bootstrap, output_kafka_security_protocol="PLAINTEXT",
        alert_topic=f"alerts-{tag}", output_topic=f"out-{tag}", dead_letter_topic=f"dlq-{tag}",
        consumer_group=f"grp-{tag}", data_dir=tmp_path)
    return Settings(**{**values, **extra})


def test_right_credentials_consume_from_the_secured_cluster_and_publish_to_another(
        secured, certificates, kafka_bootstrap, tmp_path):
    settings = _settings(secured, certificates, kafka_bootstrap, tmp_path)
    security = settings.input_security()
    create_topics(secured.secure_bootstrap_servers, [settings.alert_topic], 4, security)
    produce_all(secured.secure_bootstrap_servers, settings.alert_topic, simulated_packets(120, seed=31),
                security=security)
    registry = Registry()
    store = Store(tmp_path / "s.sqlite3")
    worker = make_worker(settings, secured.secure_bootstrap_servers, registry=registry, store=store)
    stats = worker.run(max_messages=120)
    assert stats.total() == 120 and store.count() == 120 * len(registry.models)
    out = read_topic(kafka_bootstrap, settings.output_topic, expect=120 * len(registry.models))
    assert len(out) == 120 * len(registry.models), "the results went to the output cluster"
    for shown in (repr(settings), repr(security), repr(worker.config)):
        assert "s3cret" not in shown, "secrets never in a repr (logs)"


def test_a_wrong_password_fails_fast_at_start_up_with_a_clear_error(secured, certificates,
                                                                     kafka_bootstrap, tmp_path):
    settings = _settings(secured, certificates, kafka_bootstrap, tmp_path, password="wrong-password")
    t0 = time.monotonic()
    with pytest.raises(BrokerError, match="authentication failed") as caught:
        make_worker(settings, secured.secure_bootstrap_servers, registry=Registry(),
                    store=Store(tmp_path / "s.sqlite3"))
    assert time.monotonic() - t0 < 10, "fast, not a silent hang"
    assert "KAFKA_SASL" in str(caught.value) and "wrong-password" not in str(caught.value)

    # `run`: the API stays up and readiness says why, without the secret
    with TestClient(create_app(settings, consume=True, registry=Registry())) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 503
    detail = ready.json()["checks"]["worker"]["detail"]
    assert "authentication failed" in detail and "wrong-password" not in ready.text
    assert "authentication failed" in ready.json()["checks"]["broker"]["detail"]


def test_without_the_client_certificate_the_cluster_refuses_us(secured, certificates, kafka_bootstrap,
                                                                tmp_path):
    settings = _settings(secured, certificates, kafka_bootstrap, tmp_path,
                         kafka_ssl_certificate_location=None, kafka_ssl_key_location=None)
    with pytest.raises(BrokerError, match=r"Kafka at .*SASL_SSL"):
        make_worker(settings, secured.secure_bootstrap_servers, registry=Registry(),
                    store=Store(tmp_path / "s.sqlite3"))


def test_a_new_group_can_start_at_the_latest_alerts(kafka_bootstrap, tmp_path):
    tag = uuid.uuid4().hex[:8]
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, alert_topic=f"alerts-{tag}",
                        output_topic=f"out-{tag}", dead_letter_topic=f"dlq-{tag}",
                        consumer_group=f"grp-{tag}", data_dir=tmp_path, kafka_auto_offset_reset="latest")
    decoder = Decoder()
    old = simulated_packets(50, seed=32)
    create_topics(kafka_bootstrap, [settings.alert_topic], 4)
    produce_all(kafka_bootstrap, settings.alert_topic, old)  # before the group exists: never read
    store = Store(tmp_path / "s.sqlite3")
    worker = make_worker(settings, kafka_bootstrap, registry=Registry(), store=store)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        new = iter(simulated_packets(400, seed=33))
        deadline = time.monotonic() + 90
        while worker.stats.total() < 20:  # new alerts trickle in until the worker has read some
            assert time.monotonic() < deadline, "the worker read no new alerts"
            produce_all(kafka_bootstrap, settings.alert_topic, [next(new) for _ in range(5)])
            time.sleep(0.5)
    finally:
        worker.stop()
        thread.join(30)
    old_ids = {decoder.decode(p).dia_source_id for p in old}
    stored = {r["dia_source_id"] for r in store.query(StoreQuery(limit=10_000))}
    assert stored and not stored & old_ids, "only alerts that came after the group started"
