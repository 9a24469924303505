"""schemathesis against the OpenAPI schema of a running server: no generated request gives a 5xx.

Runs the schemathesis CLI (its pytest plugin does not load under pytest 9)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import serve


def test_no_generated_request_gives_a_server_error(tmp_path):
    server, url = serve({}, tmp_path)
    try:
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
