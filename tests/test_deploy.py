"""The deployment files: docker-compose.yml validates and agrees with the code and deploy/.

No Docker engine runs here; `docker-compose config` (Debian's docker-compose, which `.ci/run`
installs) validates the file against the Compose schema without one.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
PROMETHEUS = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="docker-compose not installed (.ci/run installs Debian's)")
def test_compose_file_validates():
    out = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr


def test_compose_settings_are_real_settings():
    """A misspelt ALERT_CLASSIFIER_ variable would be ignored silently by pydantic-settings."""
    known = {f"ALERT_CLASSIFIER_{name.upper()}" for name in Settings.model_fields}
    for name, service in COMPOSE["services"].items():
        env = service.get("environment") or {}
        ours = {k for k in env if k.startswith("ALERT_CLASSIFIER_")}
        assert ours <= known, f"{name}: unknown settings {sorted(ours - known)}"


def test_compose_mounts_and_build_context_exist():
    for name, service in COMPOSE["services"].items():
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_prometheus_scrapes_the_compose_services_on_their_ports():
    services = COMPOSE["services"]
    targets = {}
    for job in PROMETHEUS["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.split(":")
                targets[host] = int(port)
        for dns in job.get("dns_sd_configs", []):
            for host in dns["names"]:
                targets[host] = int(dns["port"])
    assert targets == {"service": Settings.model_fields["port"].default, "worker": int(
        services["worker"]["environment"]["ALERT_CLASSIFIER_METRICS_PORT"])}
    assert "service" in services and "worker" in services


def test_dashboard_queries_name_metrics_the_service_exports():
    import json
    import re

    from service.metrics import Metrics

    exported = {m.name for m in Metrics().registry.collect()}
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "alert-classifier.json").read_text())
    used = {re.sub(r"_(total|bucket|count|sum)$", "", name)
            for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"alert_classifier_[a-z_]+", target["expr"])}
    assert used and used <= exported, used - exported
