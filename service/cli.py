"""The `alert-classifier` command. Thin: parse arguments, build Settings, call the stage functions."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from models.errors import AlertClassifierError, DecodeError
from service.feed import produce_simulated
from service.settings import Settings
from streaming import local_broker
from streaming.decode import Decoder, SchemaVersion
from streaming.kafka import broker, create_topics, produce_all

TRAINABLE = ("rrlyrae", "supernova", "anomaly")  # models/train/train.py: MODEL_NAMES


def _state_file(settings: Settings):
    return settings.data_dir / "kafka.json"


def cmd_kafka(args: argparse.Namespace, settings: Settings) -> int:
    state = _state_file(settings)
    if settings.kafka_bootstrap_servers:
        print(f"ALERT_CLASSIFIER_KAFKA_BOOTSTRAP_SERVERS={settings.kafka_bootstrap_servers} is set: "
              "using that cluster, nothing to start or stop here.")
        return 0
    handle = local_broker.BrokerHandle.load(state)
    if args.action == "jars":
        print(local_broker.ensure_jars(settings.kafka_cache_dir))
        return 0
    if args.action == "status":
        if handle and handle.alive():
            print(f"running at {handle.bootstrap_servers} (pid {_pids(handle)})")
            return 0
        print("not running")
        return 1
    if args.action == "start":
        if handle and handle.alive():
            print(f"already running at {handle.bootstrap_servers} (pid {_pids(handle)})")
            return 0
        handle = local_broker.start(settings.kafka_cache_dir, partitions=settings.kafka_partitions,
                                    detach=True, nodes=args.nodes)
        handle.save(state)
        print(f"started at {handle.bootstrap_servers} (pid {_pids(handle)}) in {handle.started_in_s:.1f} s; "
              f"export ALERT_CLASSIFIER_KAFKA_BOOTSTRAP_SERVERS={handle.bootstrap_servers} to use it")
        return 0
    # stop
    if not handle:
        print("no local broker recorded; nothing to stop")
        return 0
    local_broker.stop(handle)
    state.unlink(missing_ok=True)
    print("stopped")
    return 0


def _pids(handle) -> str:
    return ", ".join(str(n.pid) for n in handle.nodes)


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """The whole service on embedded defaults: local broker (unless one is configured), worker and
    API in one process, SQLite, and a simulated alert stream flowing through it. Ctrl-C stops all."""
    import threading

    import uvicorn

    from service.app import create_app
    from service.store import Store

    with broker(settings.kafka_bootstrap_servers, settings.kafka_cache_dir,
                settings.kafka_partitions) as bootstrap:
        settings = settings.model_copy(update={"kafka_bootstrap_servers": bootstrap})
        stop = threading.Event()
        feeder = None
        if args.rate > 0:
            sim_args = argparse.Namespace(count=10**9, rate=args.rate, visit_size=args.visit_size,
                                          visit_interval=0.0, source=args.source, cutout_bytes=0,
                                          topic=None, seed=args.seed, stop=stop, quiet=True, pool=300)
            feeder = threading.Thread(target=produce_simulated, args=(settings, bootstrap, sim_args),
                                      name="simulate", daemon=True)
        app = create_app(settings, consume=True, before_stop=stop.set)
        server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port,
                                               log_level="warning"))
        store = Store(settings.store_location)

        def report() -> None:
            while not stop.wait(2.0):
                if server.started:
                    print(f"\r{store.count():,} results stored · status page http://{settings.host}:"
                          f"{settings.port}/ · Ctrl-C stops", end="", file=sys.stderr, flush=True)

        print(f"broker {bootstrap}; API and status page on http://{settings.host}:{settings.port}/ "
              f"(OpenAPI at /docs); simulating {args.rate:g} alerts/s", file=sys.stderr)
        if feeder is not None:
            feeder.start()
        threading.Thread(target=report, name="report", daemon=True).start()
        try:
            server.run()
        except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown
            pass
        finally:
            stop.set()
            if feeder is not None:
                feeder.join(10)
            print("\nstopped cleanly", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """API only (no consumer): classify requests, queries, model status."""
    import uvicorn

    from service.app import create_app

    settings = settings.model_copy(update={k: v for k, v in (("host", args.host), ("port", args.port))
                                           if v is not None})
    uvicorn.run(create_app(settings, consume=False), host=settings.host, port=settings.port,
                log_level="info")
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Consumer only, for scale-out: more of these in one group split the partitions."""
    import logging

    from service.runtime import make_worker, settle

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not settings.kafka_bootstrap_servers:
        print("worker needs a cluster: set ALERT_CLASSIFIER_KAFKA_BOOTSTRAP_SERVERS "
              "(or use `alert-classifier run`, which starts a local broker)", file=sys.stderr)
        return 2
    from service.metrics import Metrics

    metrics = Metrics()
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, registry=metrics.registry)
    worker = make_worker(settings, settings.kafka_bootstrap_servers, observer=metrics.observe_batch)
    metrics.watch_worker(worker.stalled_seconds)
    worker.install_signal_handlers()
    settle()
    stats = worker.run(max_messages=args.max_messages)
    print(f"stopped after {stats.total()} messages: classified {stats.total('classified')}, "
          f"declined {stats.total('declined')}, dead-lettered {stats.total('dead_lettered')}",
          file=sys.stderr)
    return 0


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    """Produce a simulated night: visits of `--visit-size` alerts, paced to `--rate` alerts/s."""
    if not settings.kafka_bootstrap_servers:
        print("simulate needs a cluster: set ALERT_CLASSIFIER_KAFKA_BOOTSTRAP_SERVERS "
              "(`alert-classifier kafka start` prints it)", file=sys.stderr)
        return 2
    produce_simulated(settings, settings.kafka_bootstrap_servers, args)
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Alert files into a topic: raw packets byte for byte, container/JSON alerts re-encoded framed."""
    from streaming.replay import alert_files, read_alerts

    if not settings.kafka_bootstrap_servers:
        print("replay needs a cluster: set ALERT_CLASSIFIER_KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr)
        return 2
    decoder = Decoder(settings.default_version, settings.schema_registry_url)
    topic = args.topic or settings.alert_topic
    create_topics(settings.kafka_bootstrap_servers, [topic], settings.kafka_partitions,
                  settings.input_security())

    def values():
        for path in alert_files(args.paths):
            data = path.read_bytes()
            if data[:1] == b"\x00" or not (data.startswith(b"Obj\x01") or data.lstrip()[:1] == b"{"):
                yield data  # a packet: unchanged, even if it will be dead-lettered
                continue
            for item in read_alerts(path, decoder):
                if isinstance(item, DecodeError):
                    print(f"skipped: {item}", file=sys.stderr)
                else:
                    yield decoder.encode(item.record, item.version)

    n = produce_all(settings.kafka_bootstrap_servers, topic, values(), security=settings.input_security())
    print(f"replayed {n} alerts into {topic!r}")
    return 0


def cmd_classify(args: argparse.Namespace, settings: Settings) -> int:
    """Offline: classify alert files and print one JSON line per alert (or per unreadable file)."""
    import orjson

    from models.registry import Registry
    from streaming.pipeline import classify_alerts
    from streaming.replay import alert_files, read_alerts

    version = SchemaVersion.parse(args.schema) if args.schema else settings.default_version
    decoder = Decoder(version, settings.schema_registry_url)
    registry = Registry(extra=settings.retrained_models_dir)
    failures = 0
    for path in alert_files(args.paths):
        items = read_alerts(path, decoder)
        alerts = [a for a in items if not isinstance(a, DecodeError)]
        for err in (e for e in items if isinstance(e, DecodeError)):
            failures += 1
            sys.stdout.buffer.write(orjson.dumps({"file": str(path), "error": {
                "reason": err.reason, "message": str(err)}}) + b"\n")
        for result in classify_alerts(alerts, registry):
            sys.stdout.buffer.write(orjson.dumps({"file": str(path), **result}) + b"\n")
    sys.stdout.flush()
    return 1 if failures else 0


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from models.train.train import MODEL_VERSION, train_all

    data_dir = args.data_dir or settings.training_data_dir
    if not data_dir.is_dir():
        print(f"training data directory {data_dir} not found: pass --data-dir or set "
              "ALERT_CLASSIFIER_TRAINING_DATA_DIR", file=sys.stderr)
        return 2
    cards = train_all(data_dir, args.out, seed=args.seed, version=args.version or MODEL_VERSION,
                      names=tuple(args.models))
    for name, card in cards.items():
        print(f"{name} {card['version']}: sha256 {card['sha256'][:12]}..., written to "
              f"{args.out / name / card['version']}")
    return 0


def cmd_anomaly_retrain(args: argparse.Namespace, settings: Settings) -> int:
    """Feedback -> light curves of the labelled objects (the store's kept detections) -> features ->
    a new anomaly model version (models/train/anomaly.py: retrain)."""
    import numpy as np

    from models import features
    from models.registry import Registry
    from models.train.anomaly import retrain
    from service.store import Store

    current = Registry(extra=settings.retrained_models_dir).models.get("anomaly")
    if current is None or current.folder is None:
        print("no anomaly model is installed: run `alert-classifier train --models anomaly`", file=sys.stderr)
        return 2
    store = Store(settings.store_location)
    labels = store.feedback()
    if not labels:
        print("no feedback in the store yet: label objects with POST /v1/anomalies/{diaObjectId}/feedback",
              file=sys.stderr)
        return 2
    curves = store.recall({oid: float("inf") for oid in labels})
    missing = sorted(set(labels) - set(curves))
    if missing:
        print(f"{len(missing)} labelled objects have no kept detections and are left out "
              f"(e.g. {missing[:3]}); keep history on (ALERT_CLASSIFIER_KEEP_HISTORY)", file=sys.stderr)
    ids = [oid for oid in labels if oid in curves]
    if not ids:
        print("none of the labelled objects has kept detections: nothing to learn from", file=sys.stderr)
        return 2
    print(f"retraining {current.name}/{current.version} on {len(ids)} labelled objects "
          f"({sum(labels[i] == 'anomaly' for i in ids)} anomalies)...", flush=True)
    X = features.extract([curves[i] for i in ids])
    out = args.out or settings.retrained_models_dir
    card = retrain(current.folder, X, np.array([labels[i] == "anomaly" for i in ids]), out, args.seed)
    print(f"{card['name']} {card['version']}: sha256 {card['sha256'][:12]}..., written to "
          f"{out / card['name'] / card['version']}; restart the service (or workers) to load it")
    return 0


def cmd_prune(args: argparse.Namespace, settings: Settings) -> int:
    """Retention: drop results and kept detections older than the given days, counted back from the
    newest observation in the store. Safe while workers run (short transactions)."""
    if args.results_days is None and args.history_days is None:
        print("nothing to prune: pass --results-days and/or --history-days", file=sys.stderr)
        return 2
    from service.store import PRUNE_BATCH, Store

    store = Store(settings.store_location)
    newest = store.newest_mjd()
    if newest is None:
        print(f"the store {settings.store_location} is empty: nothing to prune", file=sys.stderr)
        return 0
    for what, days, steps in (("results", args.results_days, store.prune_results),
                              ("history", args.history_days, store.prune_history)):
        if days is None:
            continue
        before = newest - days
        total = 0
        for deleted in steps(before, batch=args.batch or PRUNE_BATCH):
            total += deleted
            print(f"[prune] {what}: {total} rows deleted so far", file=sys.stderr, flush=True)
        print(f"{what}: {total} rows observed before MJD {before:.3f} deleted ({days:g} days before "
              f"the newest, MJD {newest:.3f})")
    store.close()
    return 0


def cmd_cards(args: argparse.Namespace, settings: Settings) -> int:
    """The committed model cards' held-out metrics as Markdown tables (docs/models.md carries them)."""
    from models.cards import block, latest_cards, markdown

    print(block(latest_cards()) if args.block else markdown(latest_cards()), end="")
    return 0


def cmd_colours(args: argparse.Namespace, settings: Settings) -> int:
    from models.train.colours import colour_table

    data_dir = args.data_dir or settings.training_data_dir
    print(colour_table(data_dir, seed=args.seed))
    return 0


def _days(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"days must be a number >= 0, got {text!r}")
    return value


def _rows(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"a batch holds at least 1 row, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alert-classifier", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    kafka = sub.add_parser("kafka", help="start, stop or inspect the local Apache Kafka broker")
    kafka.add_argument("action", choices=["start", "stop", "status", "jars"])
    kafka.add_argument("--nodes", type=int, choices=[1, 3], default=1,
                       help="`start`: one broker, or a 3-node KRaft cluster (replication 3, min.insync 2)")
    kafka.set_defaults(func=cmd_kafka)

    run = sub.add_parser("run", help="the whole service on embedded defaults, fed by simulated alerts")
    run.add_argument("--rate", type=float, default=200.0,
                     help="simulated alerts/s fed into it (default 200; 0: none)")
    run.add_argument("--visit-size", type=int, default=1000, help="alerts per simulated visit")
    run.add_argument("--source", choices=["auto", "builtin", "data"], default="builtin")
    run.add_argument("--seed", type=int, default=0)
    run.set_defaults(func=cmd_run)

    serve = sub.add_parser("serve", help="the HTTP API only (scale the API apart from workers)")
    serve.add_argument("--host", help="default: ALERT_CLASSIFIER_HOST or 127.0.0.1")
    serve.add_argument("--port", type=int, help="default: ALERT_CLASSIFIER_PORT or 8000")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="consume, classify and publish (scale out with more workers)")
    worker.add_argument("--max-messages", type=int, help="stop after this many messages (testing)")
    worker.set_defaults(func=cmd_worker)

    simulate = sub.add_parser("simulate", help="produce a simulated night of Rubin v11.1 alerts")
    simulate.add_argument("--count", type=int, default=10_000, help="alerts to produce (default 10000)")
    simulate.add_argument("--rate", type=float, default=0, help="alerts/s cap (default: as fast as possible)")
    simulate.add_argument("--visit-size", type=int, default=10_000, help="alerts per visit (Rubin: ~10000)")
    simulate.add_argument("--visit-interval", type=float, default=0.0,
                          help="pause between visits in s (Rubin: ~40; default 0)")
    simulate.add_argument("--source", choices=["auto", "builtin", "data"], default="auto",
                          help="objects from the real datasets (if present) or the built-in generator")
    simulate.add_argument("--cutout-bytes", type=int, default=0, help="size of each of 3 cutout stamps")
    simulate.add_argument("--topic", help="default: the alert topic from settings")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--malformed", type=float, default=0.0, metavar="FRACTION",
                          help="this fraction of bad packets, every kind in turn (streaming/faults.py): "
                               "watch the dead-letter topic fill")
    simulate.set_defaults(func=cmd_simulate)

    replay = sub.add_parser("replay", help="produce alert files (Avro, containers, JSON, directories)")
    replay.add_argument("paths", nargs="+")
    replay.add_argument("--topic", help="default: the alert topic from settings")
    replay.set_defaults(func=cmd_replay)

    classify = sub.add_parser("classify", help="classify alert files offline (no Kafka); JSON lines out")
    classify.add_argument("paths", nargs="+", help="Avro packets or containers, JSON alerts, directories")
    classify.add_argument("--schema", help="schema version of unframed Avro packets, e.g. 7.0")
    classify.set_defaults(func=cmd_classify)

    from models.registry import ARTIFACTS

    train = sub.add_parser("train", help="train, evaluate and export every model (ONNX + card)")
    train.add_argument("--data-dir", type=Path, help="datasets folder (default: ../shared/data)")
    train.add_argument("--out", type=Path, default=ARTIFACTS, help=f"artefacts folder (default {ARTIFACTS})")
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--version", help="classifier version (default: the current one in models/train)")
    train.add_argument("--models", nargs="+", choices=TRAINABLE, default=list(TRAINABLE),
                       help="which models to train (default: all)")
    train.set_defaults(func=cmd_train)

    prune = sub.add_parser("prune", help="retention: delete old results and kept detections from the store")
    prune.add_argument("--results-days", type=_days, metavar="DAYS",
                       help="keep classifications of the last DAYS of observations")
    prune.add_argument("--history-days", type=_days, metavar="DAYS",
                       help="keep detections of the last DAYS for light-curve history "
                            "(RR Lyrae gain from years: keep at least 1000)")
    prune.add_argument("--batch", type=_rows, help="rows per transaction (default 5000)")
    prune.set_defaults(func=cmd_prune)

    colours = sub.add_parser("colours", help="the astroML RR Lyrae colour exercise: completeness table")
    colours.add_argument("--data-dir", type=Path)
    colours.add_argument("--seed", type=int, default=0)
    colours.set_defaults(func=cmd_colours)

    anomaly = sub.add_parser("anomaly", help="the anomaly model: learn from experts' feedback")
    anomaly_sub = anomaly.add_subparsers(dest="anomaly_command", required=True)
    retrain = anomaly_sub.add_parser("retrain", help="a new anomaly model version from the feedback in the "
                                                     "store (POST /v1/anomalies/{id}/feedback)")
    retrain.add_argument("--out", type=Path, help="artefacts folder (default: <data_dir>/models, which the "
                                                  "service loads beside the shipped models)")
    retrain.add_argument("--seed", type=int, default=42)
    retrain.set_defaults(func=cmd_anomaly_retrain)

    cards = sub.add_parser("cards", help="the model cards' held-out metrics as Markdown tables")
    cards.add_argument("--block", action="store_true", help="with the markers docs/models.md uses")
    cards.set_defaults(func=cmd_cards)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
        return args.func(args, settings)
    except AlertClassifierError as exc:
        print(f"error ({exc.reason}): {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
