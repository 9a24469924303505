"""Wiring: build the long-lived parts (store, registry, worker) from the one Settings object."""

from __future__ import annotations

import gc
from importlib.metadata import PackageNotFoundError, version

from models import features
from models.registry import Registry
from service.settings import Settings
from service.store import Store
from streaming import bulk_decode
from streaming.consumer import BatchObserver, Worker, WorkerConfig
from streaming.decode import Decoder
from streaming.kafka import create_topics


def package_version() -> str:
    try:
        return version("alert-classifier")
    except PackageNotFoundError:
        return "0.0.0+local"


def compile_kernels() -> None:
    """Compile numba's kernels (the feature groups and template fits, the bulk decoder's reader) or
    read them from its cache, so that the first batch or request is not the one that waits."""
    features.warm_up()
    bulk_decode.warm_up()


GC_THRESHOLD = (100_000, 10, 10)  # young-generation allocations; the older generations' defaults


def settle() -> None:
    """Call once start-up is over. What it loaded (modules, models, schemas, compiled kernels) lives
    as long as the process: out of the cyclic collector's sight, its collections walk only what
    requests and batches create (in a stream worker they took ~5% of the CPU otherwise). And they run
    less often: a 500-alert batch makes ~100,000 short-lived tuples (detections, rows, results), which
    the default threshold (700) collected ~150 times a batch for no garbage; at GC_THRESHOLD a
    worker's CPU per alert fell 3% (bench/cpu_bench.py, 543-548 -> 525-529 us, two interleaved runs)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def make_decoder(settings: Settings) -> Decoder:
    return Decoder(settings.default_version, settings.schema_registry_url)


def make_worker(settings: Settings, bootstrap: str, *, registry: Registry | None = None,
                store: Store | None = None, observer: BatchObserver | None = None,
                beside_http: bool = False) -> Worker:
    """A worker on the alert cluster (`bootstrap`), publishing to the output cluster. Raises
    BrokerError at once, saying which setting, when either cluster refuses our credentials.
    `beside_http`: it runs inside the HTTP server's process, whose event loop must not wait for a
    whole batch's feature calls."""
    security, output_security = settings.input_security(), settings.output_security()
    output_bootstrap = settings.output_bootstrap(bootstrap)
    if output_bootstrap == bootstrap and output_security == security:
        create_topics(bootstrap, [settings.alert_topic, settings.output_topic, settings.dead_letter_topic],
                      settings.kafka_partitions, security)
    else:
        create_topics(bootstrap, [settings.alert_topic], settings.kafka_partitions, security)
        create_topics(output_bootstrap, [settings.output_topic, settings.dead_letter_topic],
                      settings.kafka_partitions, output_security)
    config = WorkerConfig(bootstrap=bootstrap, topic=settings.alert_topic, group=settings.consumer_group,
                          output_topic=settings.output_topic, dead_letter_topic=settings.dead_letter_topic,
                          broker_version=package_version(), batch_size=settings.batch_size,
                          output_format=settings.output_format, keep_history=settings.keep_history,
                          stall_after_s=settings.stall_after_s, security=security,
                          output_bootstrap=output_bootstrap, output_security=output_security,
                          auto_offset_reset=settings.kafka_auto_offset_reset,
                          feature_threads=settings.feature_threads,
                          feature_chunk=features.MANY_CHUNK if beside_http else None)
    compile_kernels()
    return Worker(config, registry or Registry(extra=settings.retrained_models_dir),
                  store or Store(settings.store_location), make_decoder(settings), observer)
