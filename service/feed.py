"""Feeding the service: simulated Rubin alerts produced into a topic, with a progress display."""

from __future__ import annotations

import argparse
import random
import sys
import time

from service.settings import Settings
from streaming.decode import Decoder
from streaming.faults import KINDS, malformed
from streaming.kafka import create_topics, produce


class Progress:
    """A one-line progress display on stderr with the achieved rate."""

    def __init__(self, total: int, what: str) -> None:
        self.total, self.what, self.t0, self.last = total, what, time.monotonic(), 0.0

    def __call__(self, n: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < 0.25 and n < self.total:
            return
        self.last = now
        rate = n / max(now - self.t0, 1e-9)
        width = 30
        filled = int(width * n / max(self.total, 1))
        print(f"\r{self.what} [{'#' * filled}{'.' * (width - filled)}] {n}/{self.total} "
              f"{rate:,.0f}/s", end="", file=sys.stderr, flush=True)
        if n >= self.total:
            print(file=sys.stderr)


def _simulator(args: argparse.Namespace, settings: Settings):
    from streaming.simulate import NightSimulator, objects_from_curves

    make_object = None
    data_dir = settings.training_data_dir
    if args.source in ("auto", "data") and data_dir.is_dir():
        try:
            from models.train import datasets
        except ImportError:  # training extras not installed: built-in generator
            datasets = None
        if datasets is not None:
            print(f"drawing objects from real light curves in {data_dir} (PLAsTiCC, Sesar, EROS)...",
                  file=sys.stderr)
            curves = (datasets.load_plasticc(data_dir) + datasets.load_sesar(data_dir)
                      + datasets.load_eros(data_dir))
            make_object = objects_from_curves(curves)
    elif args.source == "data":
        print(f"no datasets at {data_dir}", file=sys.stderr)
    return NightSimulator(args.seed, make_object=make_object, cutout_bytes=args.cutout_bytes,
                          pool_size=getattr(args, "pool", 2000))


def produce_simulated(settings: Settings, bootstrap: str, args: argparse.Namespace) -> int:
    from confluent_kafka import Producer

    from streaming.kafka import producer_config

    sim = _simulator(args, settings)
    decoder = Decoder()
    topic = args.topic or settings.alert_topic
    create_topics(bootstrap, [topic], settings.kafka_partitions, settings.input_security())
    producer = Producer(producer_config(bootstrap, settings.input_security()))
    progress = Progress(args.count, f"simulate -> {topic}")
    stop = getattr(args, "stop", None)
    quiet = getattr(args, "quiet", False)
    sent, t0 = 0, time.monotonic()
    bad_fraction, bad_made, rng = getattr(args, "malformed", 0.0), 0, random.Random(args.seed)
    while sent < args.count and not (stop is not None and stop.is_set()):
        visit = list(sim.alerts(min(args.visit_size, args.count - sent)))
        for record in visit:
            key = str(record["diaSource"]["diaObjectId"]).encode()
            if bad_fraction and rng.random() < bad_fraction:
                value = malformed(KINDS[bad_made % len(KINDS)], record, sim.version, decoder)
                bad_made += 1
            else:
                value = decoder.encode(record, sim.version)
            produce(producer, topic, value, key)
            sent += 1
            producer.poll(0)
            if not quiet:
                progress(sent)
            if args.rate:  # pace to the requested rate
                ahead = sent / args.rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        if args.visit_interval and sent < args.count:
            time.sleep(args.visit_interval)
    producer.flush(60)
    if not quiet:
        progress(sent, force=True)
    return sent
