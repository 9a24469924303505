"""The whole service (`alert-classifier run`: broker, worker, API, simulated stream) and its status
page, opened in real headless Chromium (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from streaming.local_broker import free_port

pytestmark = pytest.mark.kafka
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def running_service(kafka_bootstrap, tmp_path_factory):
    """`alert-classifier run` against the session's broker, fed 150 simulated alerts/s."""
    port = free_port()
    data = tmp_path_factory.mktemp("run")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERT_CLASSIFIER_")}
    tag = str(port)
    env.update({"ALERT_CLASSIFIER_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "ALERT_CLASSIFIER_DATA_DIR": str(data), "ALERT_CLASSIFIER_PORT": str(port),
                "ALERT_CLASSIFIER_ALERT_TOPIC": f"run-{tag}",
                "ALERT_CLASSIFIER_OUTPUT_TOPIC": f"run-out-{tag}",
                "ALERT_CLASSIFIER_DEAD_LETTER_TOPIC": f"run-dlq-{tag}",
                "ALERT_CLASSIFIER_CONSUMER_GROUP": f"run-{tag}", "OMP_NUM_THREADS": "1"})
    with open(data / "run.log", "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "run", "--rate", "150"], env=env,
                                stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v1/status", timeout=1).json()["stored"] > 0:
                break
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail((data / "run.log").read_text()[-3000:])
    yield url, proc, data
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


def test_run_classifies_the_simulated_stream(running_service):
    url, _proc, _data = running_service
    first = httpx.get(f"{url}/v1/status").json()
    time.sleep(4)
    later = httpx.get(f"{url}/v1/status").json()
    assert later["stored"] > first["stored"], "the simulated stream keeps flowing through"
    assert later["consuming"] and later["totals"]["classified"] > 0
    assert later["totals"]["history_kept"] > 0
    ready = httpx.get(f"{url}/readyz").json()
    assert ready["status"] == "ready", ready
    assert ready["checks"]["worker"]["ok"] and ready["checks"]["broker"]["ok"]
    metrics = httpx.get(f"{url}/metrics").text
    assert 'alert_classifier_messages_total{outcome="classified"' in metrics
    assert "alert_classifier_consumer_lag{" in metrics
    kept = [line for line in metrics.splitlines()
            if line.startswith('alert_classifier_history_points_total{direction="kept"}')]
    assert kept and float(kept[0].split()[-1]) > 0, "the store keeps the stream's detections"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (.ci/run installs it)")
def test_status_page_shows_live_figures_in_chromium(running_service, tmp_path):
    from playwright.sync_api import sync_playwright

    url, _proc, _data = running_service
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 820})
            page.goto(url + "/")
            page.wait_for_function("document.body.dataset.live === 'yes'", timeout=30_000)
            page.wait_for_function("Number(document.getElementById('rate').textContent) > 0", timeout=60_000)
            stored = int(page.text_content("#stored").replace(",", ""))
            assert stored > 0
            assert int(page.text_content("#kept").replace(",", "")) > 0
            models = page.locator("#models tbody tr")
            assert models.count() == 3  # rrlyrae, supernova, anomaly
            assert {models.nth(i).locator("td").first.text_content() for i in range(2)} == {"rrlyrae",
                                                                                           "supernova"}
            assert page.locator("#mix tbody tr").count() > 0
            assert "consuming" in page.text_content("#state")
            assert page.locator("#spark polyline").count() == 1
            shot = tmp_path / "status-page.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if os.environ.get("ALERT_CLASSIFIER_UPDATE_SCREENSHOT"):
                DOCS.mkdir(exist_ok=True)
                shutil.copy(shot, DOCS / "status-page.png")
        finally:
            browser.close()


def test_ctrl_c_stops_everything_cleanly(running_service):
    _url, proc, data = running_service
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0, (data / "run.log").read_text()[-2000:]
    assert "stopped cleanly" in (data / "run.log").read_text()
