"""Real Apache Kafka brokers (KRaft) from Maven Central jars, for tests and `make run`.

No Docker engine and no Apache download archive on our machines: Apache publishes the broker
to Maven Central, so Maven resolves its jars into a cache once and we start `kafka.Kafka` with `java`.
The brokers run on loopback on free ports, in a fresh storage directory every time: one node by
default, or a cluster of three (combined broker + controller nodes; topics replicated 3 times with
`min.insync.replicas=2`) to test faults: `kill_node` (SIGKILL) and `restart_node` on its data.
Optionally a SASL_SSL listener beside PLAINTEXT, as production streams are secured: SCRAM users
created at format time, TLS from a PKCS12 keystore (and client certificates checked against a CA).
"""

from __future__ import annotations

import base64
import contextlib
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
# A broker's folder that no running process uses is removed by the next start once it is this old
# (a start being set up has not launched its JVM yet, and takes far less).
STALE_AFTER_S = 3600.0
LOGS_DIR_FLAG = "-Dkafka.logs.dir="

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
node.id={node_id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}{secure_listener}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}{secure_advertised}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
log.dirs={logs}
num.partitions={partitions}
default.replication.factor={rf}
min.insync.replicas={min_isr}
offsets.topic.replication.factor={rf}
offsets.topic.num.partitions=1
transaction.state.log.replication.factor={rf}
transaction.state.log.min.isr={min_isr}
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor={rf}
share.coordinator.state.topic.min.isr={min_isr}
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
background.threads=2
log.cleaner.dedupe.buffer.size=16777216
message.max.bytes=10485760
"""

SASL_SSL_PROPERTIES = """
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={jaas}
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location={keystore}
listener.name.sasl_ssl.ssl.keystore.password={password}
listener.name.sasl_ssl.ssl.key.password={password}
"""

SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"

CLIENT_CA_PROPERTIES = """
listener.name.sasl_ssl.ssl.client.auth=required
listener.name.sasl_ssl.ssl.truststore.type=PEM
listener.name.sasl_ssl.ssl.truststore.location={client_ca}
"""


@dataclass(frozen=True)
class SaslSsl:
    """A SASL_SSL listener: SCRAM-SHA-512/256 users (name -> password) created at format time, the
    server certificate in a PKCS12 keystore, and optionally a CA that client certificates must chain to."""

    users: dict[str, str]
    keystore: str
    keystore_password: str
    client_ca: str | None = None


@dataclass
class Node:
    node_id: int
    pid: int
    port: int  # PLAINTEXT
    cport: int  # CONTROLLER
    props: str
    secure_port: int | None = None  # SASL_SSL


@dataclass
class BrokerHandle:
    """What identifies running local brokers; saved as JSON so `kafka stop` can find them."""

    bootstrap_servers: str
    workdir: str
    started_in_s: float
    nodes: list[Node]
    secure_bootstrap_servers: str | None = None

    @property
    def pid(self) -> int:
        return self.nodes[0].pid

    def save(self, state_file: Path) -> None:
        state_file.parent.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, state_file: Path) -> BrokerHandle | None:
        try:
            data = json.loads(state_file.read_text())
            data["nodes"] = [Node(**n) for n in data["nodes"]]
            return cls(**data)
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def node(self, node_id: int) -> Node:
        return next(n for n in self.nodes if n.node_id == node_id)

    def alive(self) -> bool:
        return any(_alive(n.pid) for n in self.nodes)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a killed child of ours is a zombie until reaped: not alive
        return os.waitpid(pid, os.WNOHANG)[0] != pid
    except ChildProcessError:
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


def free_port() -> int:
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


def wait_ready(bootstrap: str, timeout_s: float, pid: int | None = None) -> None:
    """Block until a metadata request lists a broker, or raise BrokerError."""
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout_s
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    while time.monotonic() < deadline:
        if pid is not None and not _alive(pid):
            raise BrokerError(f"the broker (pid {pid}) exited during start-up")
        try:
            if admin.list_topics(timeout=2).brokers:
                return
        except Exception:  # noqa: BLE001 - not up yet; keep polling until the deadline
            time.sleep(0.2)
    raise BrokerError(f"no broker answered a metadata request at {bootstrap} within {timeout_s:.0f} s")


def start(cache_dir: Path, *, partitions: int = 4, detach: bool = False, log_level: str = "WARN",
          nodes: int = 1, sasl_ssl: SaslSsl | None = None) -> BrokerHandle:
    """Start fresh brokers (1, or 3 for a replicated cluster); return once every node answers.

    detach=False ties the brokers' life to this process (tests, `alert-classifier run`);
    detach=True lets them outlive us (`alert-classifier kafka start`).
    """
    if nodes not in (1, 3):
        raise BrokerError(f"a local cluster has 1 or 3 nodes, not {nodes}")
    t0 = time.monotonic()
    lib = ensure_jars(cache_dir)
    sweep_stale(cache_dir)
    if shutil.which("java") is None:
        raise BrokerError("Java is not on PATH: install a JDK 17+ (apt-get install openjdk-17-jre-headless).")
    # absolute, so the JVMs name it as `sweep_stale` finds it whatever directory either ran from
    workdir = Path(tempfile.mkdtemp(prefix="kafka-", dir=cache_dir.resolve()))
    (workdir / "log4j2.properties").write_text(LOG4J2.format(level=log_level))
    ports = [(i + 1, free_port(), free_port(), free_port() if sasl_ssl else None) for i in range(nodes)]
    voters = ",".join(f"{i}@127.0.0.1:{cport}" for i, _, cport, _ in ports)
    cluster_id = _cluster_id()
    handle = BrokerHandle(bootstrap_servers=",".join(f"127.0.0.1:{p}" for _, p, _, _ in ports),
                          workdir=str(workdir), started_in_s=0.0, nodes=[],
                          secure_bootstrap_servers=",".join(f"127.0.0.1:{sp}" for *_, sp in ports)
                          if sasl_ssl else None)
    for node_id, port, cport, secure_port in ports:
        props = _write_properties(workdir / f"node-{node_id}", node_id, port, cport, secure_port, voters,
                                  partitions, nodes, sasl_ssl)
        _format(lib, workdir, props, cluster_id, sasl_ssl)
        node = Node(node_id, 0, port, cport, str(props), secure_port)
        node.pid = _launch(lib, workdir, node, detach).pid
        handle.nodes.append(node)
    try:
        for node in handle.nodes:
            wait_ready(f"127.0.0.1:{node.port}", START_TIMEOUT_S, pid=node.pid)
        if nodes > 1:
            _wait_for_quorum(handle.bootstrap_servers, nodes)
    except BrokerError as exc:
        tails = "\n".join(f"node {n.node_id}: {_log_tail(workdir, n)}" for n in handle.nodes)
        for n in handle.nodes:
            _terminate(n.pid)
        raise BrokerError(f"{exc}\nbroker logs ({workdir}):\n{tails}") from None
    handle.started_in_s = round(time.monotonic() - t0, 2)
    what = "broker" if nodes == 1 else f"{nodes}-node cluster"
    _log(f"{what} up at {handle.bootstrap_servers} in {handle.started_in_s:.1f} s "
         f"(pid {', '.join(str(n.pid) for n in handle.nodes)})")
    return handle


def sweep_stale(cache_dir: Path, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the folders of brokers whose processes were killed before `stop` could (SIGKILL, a
    test of exactly that, a lost session): each holds its logs and data, tens of MB, for good.
    A folder is stale when no running process names it on its command line (every node's JVM does)
    and it is older than `older_than_s`. Without /proc nothing can be told, so nothing is removed."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    in_use: set[str] = set()
    for cmdline in proc.glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):  # a process that ended while we looked
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
            in_use.update(arg.removeprefix(LOGS_DIR_FLAG) for arg in args if arg.startswith(LOGS_DIR_FLAG))
    removed = []
    for folder in cache_dir.resolve().glob("kafka-*"):
        with contextlib.suppress(OSError):
            if (folder.is_dir() and str(folder) not in in_use
                    and time.time() - folder.stat().st_mtime > older_than_s):
                shutil.rmtree(folder)
                removed.append(folder)
    if removed:
        _log(f"removed {len(removed)} folder(s) of brokers that were killed before they could stop")
    return removed


def _write_properties(folder: Path, node_id: int, port: int, cport: int, secure_port: int | None,
                      voters: str, partitions: int, nodes: int, sasl_ssl: SaslSsl | None) -> Path:
    folder.mkdir(parents=True)
    text = SERVER_PROPERTIES.format(
        node_id=node_id, voters=voters, port=port, cport=cport, logs=folder / "data", partitions=partitions,
        rf=nodes, min_isr=min(2, nodes),
        secure_listener=f",SASL_SSL://127.0.0.1:{secure_port}" if secure_port else "",
        secure_advertised=f",SASL_SSL://127.0.0.1:{secure_port}" if secure_port else "")
    if sasl_ssl is not None:
        text += SASL_SSL_PROPERTIES.format(keystore=sasl_ssl.keystore, password=sasl_ssl.keystore_password,
                                           jaas=SCRAM_LOGIN)
        if sasl_ssl.client_ca:
            text += CLIENT_CA_PROPERTIES.format(client_ca=sasl_ssl.client_ca)
    props = folder / "server.properties"
    props.write_text(text)
    return props


def _java(lib: Path, workdir: Path) -> list[str]:
    # Temporary files (lz4-java unpacks its native library, one per JVM) go in the broker's folder,
    # which stop() removes: a node killed by SIGKILL left them in /tmp for good.
    return ["java", f"-Dlog4j2.configurationFile={workdir / 'log4j2.properties'}",
            f"{LOGS_DIR_FLAG}{workdir}", f"-Djava.io.tmpdir={workdir}", "-Djava.awt.headless=true",
            "-cp", f"{lib}/*"]


def _format(lib: Path, workdir: Path, props: Path, cluster_id: str, sasl_ssl: SaslSsl | None) -> None:
    scram = [arg for name, password in (sasl_ssl.users.items() if sasl_ssl else ())
             for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256")
             for arg in ("--add-scram", f"{mechanism}=[name={name},password={password}]")]
    fmt = subprocess.run([*_java(lib, workdir), "kafka.tools.StorageTool", "format",
                          f"--cluster-id={cluster_id}", "--config", str(props), *scram],
                         capture_output=True, text=True)
    if fmt.returncode != 0:
        raise BrokerError(f"formatting KRaft storage failed:\n{fmt.stdout[-2000:]}{fmt.stderr[-2000:]}")


def _launch(lib: Path, workdir: Path, node: Node, detach: bool) -> subprocess.Popen:
    java = _java(lib, workdir)
    # the child keeps its own descriptor
    with open(Path(node.props).parent / "broker.log", "ab") as log_file:
        return subprocess.Popen(
            [java[0], "-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError",
             # C1 only: a fresh broker's C2 compiler took 0.2-0.5 of a core for minutes whenever the
             # request mix changed, beside the workers on a small box; C1 code costs little more here.
             "-XX:TieredStopAtLevel=1", *java[1:],
             "kafka.Kafka", node.props],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=None if detach else _die_with_parent,
        )


def _log_tail(workdir: Path, node: Node) -> str:
    try:
        return (Path(node.props).parent / "broker.log").read_text(errors="replace")[-2000:]
    except OSError:
        return "(no log)"


def _wait_for_quorum(bootstrap: str, nodes: int, timeout_s: float = START_TIMEOUT_S) -> None:
    """Every node registered with the controller, so replicated topics can be created at once."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if len(admin.list_topics(timeout=2).brokers) >= nodes:
                return
        except Exception:  # noqa: BLE001 - not yet
            pass
        time.sleep(0.2)
    raise BrokerError(f"the {nodes} nodes did not all register within {timeout_s:.0f} s")


def kill_node(handle: BrokerHandle, node_id: int) -> None:
    """SIGKILL one node, as a crashed machine: no controlled shutdown."""
    node = handle.node(node_id)
    try:
        os.kill(node.pid, signal.SIGKILL)
        os.waitpid(node.pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
    _log(f"node {node_id} killed (pid {node.pid})")


def restart_node(handle: BrokerHandle, node_id: int, cache_dir: Path) -> None:
    """Start a stopped node again on its own data; returns once it answers."""
    node = handle.node(node_id)
    node.pid = _launch(ensure_jars(cache_dir), Path(handle.workdir), node, detach=False).pid
    wait_ready(f"127.0.0.1:{node.port}", START_TIMEOUT_S, pid=node.pid)
    _log(f"node {node_id} restarted (pid {node.pid})")


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
    # all at once: a cluster stopped node by node would keep electing leaders among the rest
    for node in handle.nodes:
        with contextlib.suppress(ProcessLookupError):
            os.kill(node.pid, signal.SIGTERM)
    for node in handle.nodes:
        _terminate(node.pid)
    shutil.rmtree(handle.workdir, ignore_errors=True)
    _log(f"broker {handle.bootstrap_servers} stopped")
