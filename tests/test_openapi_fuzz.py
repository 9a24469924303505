"""schemathesis against the OpenAPI schema of a running server: no generated request gives a 5xx,
and every answer fits the response model the schema documents.

Runs the schemathesis CLI (its pytest plugin does not load under pytest 9)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from models.registry import Registry
from service.store import Store
from streaming.decode import Decoder, latest_version
from streaming.pipeline import classify_with_records
from streaming.simulate import simulate_alerts
from tests.helpers import serve


def test_no_generated_request_gives_a_server_error(tmp_path):
    # a store with results and detections, so that queries answer rows to check against the schema
    decoder = Decoder()
    alerts = [decoder.decode(decoder.encode(r, latest_version())) for r in simulate_alerts(40, seed=4)]
    _, records, detections = classify_with_records(alerts, Registry())
    Store(tmp_path / "classifications.sqlite3").upsert(records, detections)
    server, url = serve({}, tmp_path)
    try:
        cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
        checks = "not_a_server_error,response_schema_conformance"
        run = subprocess.run([cli, "run", f"{url}/openapi.json", "--checks", checks,
                              "--max-examples", "40", "--seed", "1"],
                             capture_output=True, text=True, timeout=600)
    finally:
        server.terminate()
        server.wait(30)
    summary = run.stdout[-3000:]
    assert run.returncode == 0, summary
    assert " passed" in summary and "failed" not in summary.split("SUMMARY")[-1]
