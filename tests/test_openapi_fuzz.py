"""schemathesis against the OpenAPI schema of a running server: no generated input gives a 5xx.

Runs the schemathesis CLI (its pytest plugin does not load under pytest 9)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_generated_request_gives_a_server_error(tmp_path):
    port = _free_port()
    env = {"ALERT_CLASSIFIER_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/livez", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
        run = subprocess.run([cli, "run", f"{url}/openapi.json", "--checks", "not_a_server_error",
                              "--max-examples", "40", "--seed", "1"],
                             capture_output=True, text=True, timeout=600)
    finally:
        server.terminate()
        server.wait(30)
    summary = run.stdout[-3000:]
    assert run.returncode == 0, summary
    assert " passed" in summary and "failed" not in summary.split("SUMMARY")[-1]
