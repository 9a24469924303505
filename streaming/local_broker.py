"""A real single-node Apache Kafka broker (KRaft) from Maven Central jars, for tests and `make run`.

No Docker engine and no Apache download archive on our machines: Apache publishes the broker
to Maven Central, so Maven resolves its jars into a cache once and we start `kafka.Kafka` with `java`.
The broker runs on loopback on free ports, in a fresh storage directory every time.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from models.errors import BrokerError

POM = Path(__file__).with_name("kafka-broker-pom.xml")
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.11.0:copy-dependencies"
START_TIMEOUT_S = 90.0
STOP_GRACE_S = 20.0

LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRefs = stdout
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{cport}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={logs}
num.partitions={partitions}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
background.threads=2
log.cleaner.dedupe.buffer.size=16777216
message.max.bytes=10485760
"""


@dataclass
class BrokerHandle:
    """What identifies a running local broker; saved as JSON so `kafka stop` can find it."""

    pid: int
    bootstrap_servers: str
    workdir: str
    started_in_s: float

    def save(self, state_file: Path) -> None:
        state_file.parent.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, state_file: Path) -> BrokerHandle | None:
        try:
            return cls(**json.loads(state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except OSError:
            return False
        return True


def _log(msg: str) -> None:
    print(f"[kafka] {msg}", file=sys.stderr, flush=True)


def ensure_jars(cache_dir: Path) -> Path:
    """Resolve the broker jars into `cache_dir/lib` once; later calls return at once."""
    lib = cache_dir / "lib"
    marker = lib / ".complete"
    if marker.exists():
        return lib
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (`mvn`) is not on PATH: install it (apt-get install maven) "
                          "or set ALERT_CLASSIFIER_KAFKA_BOOTSTRAP_SERVERS to an existing cluster.")
    _log(f"resolving Apache Kafka jars from Maven Central into {lib} (once)...")
    tmp = cache_dir / "lib.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = ["mvn", "-q", "-B", "-f", str(POM), DEPENDENCY_PLUGIN,
           "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BrokerError(f"Maven could not resolve the Kafka jars (exit {proc.returncode}):\n"
                          f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    shutil.rmtree(lib, ignore_errors=True)
    tmp.rename(lib)
    marker.touch()
    _log(f"resolved {len(list(lib.glob('*.jar')))} jars")
    return lib


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster_id() -> str:
    # 22-char URL-safe base64 of a random UUID; a leading '-' would be read as an option.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _die_with_parent() -> None:
    # Linux: SIGTERM the broker when the process that started it dies, even by SIGKILL,
    # so an interrupted test run never leaves a Java process behind.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def wait_ready(bootstrap: str, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    """Block until a metadata request lists a broker, or raise BrokerError."""
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout_s
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"the broker exited with code {proc.returncode} during start-up")
        try:
            if admin.list_topics(timeout=2).brokers:
                return
        except Exception:  # noqa: BLE001 - not up yet; keep polling until the deadline
            time.sleep(0.2)
    raise BrokerError(f"no broker answered a metadata request at {bootstrap} within {timeout_s:.0f} s")


def start(cache_dir: Path, *, partitions: int = 4, detach: bool = False,
          log_level: str = "WARN") -> BrokerHandle:
    """Start a fresh broker; return once it answers metadata requests.

    detach=False ties the broker's life to this process (tests, `alert-classifier run`);
    detach=True lets it outlive us (`alert-classifier kafka start`).
    """
    t0 = time.monotonic()
    lib = ensure_jars(cache_dir)
    if shutil.which("java") is None:
        raise BrokerError("Java is not on PATH: install a JDK 17+ (apt-get install openjdk-17-jre-headless).")
    workdir = Path(tempfile.mkdtemp(prefix="kafka-", dir=cache_dir))
    port, cport = _free_port(), _free_port()
    props = workdir / "server.properties"
    props.write_text(SERVER_PROPERTIES.format(port=port, cport=cport, logs=workdir / "data",
                                              partitions=partitions))
    log4j = workdir / "log4j2.properties"
    log4j.write_text(LOG4J2.format(level=log_level))
    classpath = f"{lib}/*"
    java = ["java", f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={workdir}",
            "-Djava.awt.headless=true", "-cp", classpath]
    fmt = subprocess.run([*java, "kafka.tools.StorageTool", "format", f"--cluster-id={_cluster_id()}",
                          "--config", str(props)], capture_output=True, text=True)
    if fmt.returncode != 0:
        raise BrokerError(f"formatting KRaft storage failed:\n{fmt.stdout[-2000:]}{fmt.stderr[-2000:]}")
    with open(workdir / "broker.log", "wb") as log_file:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [java[0], "-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError", *java[1:],
             "kafka.Kafka", str(props)],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=None if detach else _die_with_parent,
        )
    bootstrap = f"127.0.0.1:{port}"
    try:
        wait_ready(bootstrap, START_TIMEOUT_S, proc)
    except BrokerError as exc:
        tail = (workdir / "broker.log").read_text(errors="replace")[-3000:]
        _terminate(proc.pid)
        raise BrokerError(f"{exc}\nbroker log ({workdir / 'broker.log'}):\n{tail}") from None
    handle = BrokerHandle(pid=proc.pid, bootstrap_servers=bootstrap, workdir=str(workdir),
                          started_in_s=round(time.monotonic() - t0, 2))
    _log(f"broker up at {bootstrap} in {handle.started_in_s:.1f} s (pid {proc.pid})")
    return handle


def _terminate(pid: int) -> None:
    """SIGTERM (controlled shutdown), then SIGKILL after a grace period; reap if it is our child."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:  # not our child: poll for its disappearance instead
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def stop(handle: BrokerHandle) -> None:
    _terminate(handle.pid)
    shutil.rmtree(handle.workdir, ignore_errors=True)
    _log(f"broker {handle.bootstrap_servers} stopped")
