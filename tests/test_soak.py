"""The soak, short: 3,000 alerts (10% malformed, every kind) on a 3-node cluster with PostgreSQL
(SQLite where PostgreSQL's binaries are absent), a worker killed, a broker killed and restarted,
PostgreSQL restarted; every offset accounted for. The long run is `python bench/soak.py`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[1]


def test_short_soak_accounts_for_every_alert():
    store = "postgres" if list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")) else "sqlite"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERT_CLASSIFIER_")}
    run = subprocess.run([sys.executable, "bench/soak.py", "--count", "3000", "--worker-kills", "1",
                          "--rate", "500", "--store", store], cwd=ROOT, env={**env, "OMP_NUM_THREADS": "1"},
                         capture_output=True, text=True, timeout=1200)
    assert run.stdout.strip(), run.stderr[-3000:]
    report = json.loads(run.stdout.splitlines()[-1])
    assert run.returncode == 0 and report["ok"], (report, run.stderr[-3000:])
    assert report["adds_up"] and report["n_problems"] == 0
    assert report["dead_letters_equal_malformed"] and report["malformed_kinds"] >= 12
    assert report["duplicate_store_rows"] == 0 and report["stalls"] == 0
    assert report["worker_exit_codes"] == [0, 0] and report["worker_tracebacks"] == 0
    assert report["postgres_restarts"] == (1 if store == "postgres" else 0)
