"""Through the real broker: framed alerts produced, consumed back, decoded, identical."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from models.errors import DecodeError
from streaming import local_broker
from streaming.decode import latest_version
from streaming.kafka import consumer_config, create_topics, produce_all
from streaming.simulate import simulate_alerts
from tests.helpers import same

pytestmark = pytest.mark.kafka
N = 3000


def test_thousands_of_framed_alerts_survive_the_broker(kafka_bootstrap, topic_name, decoder):
    version = latest_version()
    records = list(simulate_alerts(N, history=10, seed=11))
    sent = {r["diaSourceId"]: r for r in records}
    create_topics(kafka_bootstrap, [topic_name], partitions=3)
    assert produce_all(kafka_bootstrap, topic_name, decoder.encode_batch(records, version)) == N

    consumer = Consumer(consumer_config(kafka_bootstrap, f"g-{topic_name}"))
    consumer.subscribe([topic_name])
    received = {}
    deadline = time.monotonic() + 60
    try:
        while len(received) < N and time.monotonic() < deadline:
            msgs = consumer.consume(num_messages=500, timeout=1.0)
            values = [m.value() for m in msgs if m.error() is None]
            for alert in decoder.decode_batch(values):
                assert not isinstance(alert, DecodeError), alert
                received[alert.alert_id] = alert.record
    finally:
        consumer.close()

    assert len(received) == N
    for alert_id, record in received.items():
        once = decoder.decode(decoder.encode(sent[alert_id], version)).record
        assert same(record, once)


def test_broker_script_starts_and_stops_without_leaving_java(tmp_path, settings):
    """The CLI wrapper starts a detached broker, reports it, and stops it: no Java left behind."""
    env = {**os.environ, "ALERT_CLASSIFIER_DATA_DIR": str(tmp_path)}
    env.pop("ALERT_CLASSIFIER_KAFKA_BOOTSTRAP_SERVERS", None)
    cli = [sys.executable, "-m", "service.cli", "kafka"]
    start = subprocess.run([*cli, "start"], env=env, capture_output=True, text=True, timeout=180)
    assert start.returncode == 0, start.stderr
    status = subprocess.run([*cli, "status"], env=env, capture_output=True, text=True, timeout=30)
    assert status.returncode == 0 and "running" in status.stdout
    pid = int(status.stdout.split("pid ")[1].split(")")[0])
    stop = subprocess.run([*cli, "stop"], env=env, capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0, stop.stderr
    assert not _running(pid)
    after = subprocess.run([*cli, "status"], env=env, capture_output=True, text=True, timeout=30)
    assert after.returncode == 1 and "not running" in after.stdout


def test_broker_dies_with_the_process_that_started_it(tmp_path, settings):
    """A test run killed with SIGKILL leaves no broker behind (PR_SET_PDEATHSIG), and the folder it
    could not remove is swept by a later start."""
    cache = tmp_path / "cache"  # its own cache (the jars shared), so the sweep below touches nothing else
    cache.mkdir()
    (cache / "lib").symlink_to(local_broker.ensure_jars(settings.kafka_cache_dir), target_is_directory=True)
    code = ("import sys, time; from pathlib import Path; from streaming import local_broker as lb; "
            f"h = lb.start(Path({str(cache)!r})); "
            "print(h.pid, h.workdir, flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    java_pid, workdir = proc.stdout.readline().split()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while _running(int(java_pid)):
        if time.monotonic() > deadline:
            os.kill(int(java_pid), signal.SIGKILL)
            pytest.fail("the broker outlived the process that started it")
        time.sleep(0.2)
    assert Path(workdir).is_dir()  # nobody was left to remove it
    assert local_broker.sweep_stale(cache, older_than_s=0) == [Path(workdir)]
    assert not Path(workdir).exists() and (cache / "lib").is_dir()


def test_the_sweep_keeps_folders_in_use_or_just_made(tmp_path):
    """Only a broker folder that no running process names and that is older than a start takes is
    removed: a running broker's (named by its JVM's command line) and one being set up are kept."""
    folders = {name: tmp_path / f"kafka-{name}" for name in ("dead", "running", "starting")}
    for folder in folders.values():
        (folder / "node-1").mkdir(parents=True)
    an_hour_ago = time.time() - local_broker.STALE_AFTER_S - 60
    for name in ("dead", "running"):
        os.utime(folders[name], (an_hour_ago, an_hour_ago))
    (tmp_path / "lib").mkdir()
    os.utime(tmp_path / "lib", (an_hour_ago, an_hour_ago))
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                               f"{local_broker.LOGS_DIR_FLAG}{folders['running']}"])
    try:
        time.sleep(0.2)  # its command line is in /proc once it has started
        assert local_broker.sweep_stale(tmp_path) == [folders["dead"]]
    finally:
        holder.kill()
        holder.wait()
    assert folders["running"].is_dir() and folders["starting"].is_dir() and (tmp_path / "lib").is_dir()


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for init to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_simulate_can_mix_in_every_kind_of_bad_packet(kafka_bootstrap, topic_name, decoder):
    from streaming.kafka import read_topic

    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERT_CLASSIFIER_")}
    env["ALERT_CLASSIFIER_KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    run = subprocess.run([sys.executable, "-m", "service.cli", "simulate", "--count", "400", "--malformed",
                          "0.25", "--source", "builtin", "--topic", topic_name], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    packets = [m.value() or b"" for m in read_topic(kafka_bootstrap, topic_name, expect=400)]
    bad = [r for r in decoder.decode_batch(packets) if isinstance(r, DecodeError)]
    assert len(packets) == 400 and 50 <= len(bad) <= 110, len(bad)
    assert len({e.reason for e in bad}) >= 7, "the kinds come in turn"
