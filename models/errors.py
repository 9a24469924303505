"""The project's one exception tree.

It lives in `models` because every other package may import `models` (arrows point
`service -> streaming -> models`). Each error carries a stable `reason` code (used as the
dead-letter header and in HTTP error bodies) and the HTTP status it maps to.
"""

from __future__ import annotations


class AlertClassifierError(Exception):
    """Base of every error this project raises on purpose."""

    reason = "error"
    http_status = 500
    #: Transient errors are retried (broker down, store locked); permanent ones are dead-lettered.
    transient = False


# --- bad input: permanent, dead-lettered on the stream, 4xx over HTTP -------------------------

class DecodeError(AlertClassifierError):
    """A packet that cannot be turned into an alert."""

    reason = "decode_error"
    http_status = 422

    def __init__(self, message: str, *, schema_id: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.schema_id = schema_id

    def __eq__(self, other: object) -> bool:  # decode errors are values in batch results
        return (type(self) is type(other) and self.message == other.message  # type: ignore[attr-defined]
                and self.schema_id == other.schema_id)  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.message, self.schema_id))


class EmptyPacket(DecodeError):
    reason = "empty"


class TooShort(DecodeError):
    reason = "too_short"


class WrongMagicByte(DecodeError):
    reason = "wrong_magic_byte"


class UnknownSchema(DecodeError):
    reason = "unknown_schema_id"


class CorruptAvro(DecodeError):
    reason = "corrupt_avro"


class InvalidJson(DecodeError):
    reason = "invalid_json"


class MissingField(DecodeError):
    reason = "missing_field"


class InvalidValue(DecodeError):
    """A well-formed packet whose values cannot be right: NaN or infinite coordinates or times,
    out-of-range coordinates, absurd ids. Retrying cannot help: a dead letter."""

    reason = "invalid_value"


class SchemaMismatch(DecodeError):
    """Well-formed input whose values do not fit the schema (wrong types, out of range)."""

    reason = "schema_mismatch"


class LightCurveError(AlertClassifierError):
    """An alert whose light curve cannot be built (e.g. no band on a source)."""

    reason = "bad_light_curve"
    http_status = 422


class StoreRejected(AlertClassifierError):
    """The store refused the data itself (an integrity or data error): retrying the same rows
    cannot help, so the worker finds the alerts behind them and dead-letters them."""

    reason = "store_rejected"
    http_status = 422


class OutputRejected(AlertClassifierError):
    """The output topic refused a record for good (e.g. too large): dead-lettered like the above."""

    reason = "output_rejected"
    http_status = 500


class ProcessingError(AlertClassifierError):
    """An unexpected failure while classifying one alert (a bug met by this alert's data): the
    alert is dead-lettered with the error text, the rest of its batch goes on."""

    reason = "processing_error"
    http_status = 500


# --- configuration and artefacts: permanent, the operator must act ----------------------------

class ModelError(AlertClassifierError):
    """A model artefact that cannot be loaded or disagrees with its card or the extractor."""

    reason = "model_error"
    http_status = 500


# --- infrastructure: transient, retried -------------------------------------------------------

class BrokerError(AlertClassifierError):
    """The Kafka broker cannot be started, reached or written to."""

    reason = "broker_error"
    http_status = 503
    transient = True


class SchemaRegistryUnavailable(AlertClassifierError):
    """The schema registry could not answer (network error, 5xx): the batch is retried, its alerts
    are not dead-lettered because the registry blinked. A 404 is `UnknownSchema`, permanent."""

    reason = "schema_registry_unavailable"
    http_status = 503
    transient = True


class StoreError(AlertClassifierError):
    """The store is unreachable or busy (connection lost, database locked, timeout)."""

    reason = "store_error"
    http_status = 503
    transient = True
