"""The object explorer: pages rendered from a store that kept real objects' alerts (a Sesar RR Lyrae
and a ZTF supernova from ../shared/data; simulated ones where the data are absent), checked as HTML
and, in headless Chromium, as drawn."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from models.registry import Registry
from service.app import create_app
from service.settings import Settings
from streaming.decode import Decoder, latest_version
from streaming.lightcurve import BANDS
from streaming.simulate import SimulatedObject, alert_at
from tests.helpers import long_lived_object, serve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DOCS = Path(__file__).resolve().parents[1] / "docs"
BIG_ID = 2**62 + 123_456_789  # beyond 2**53: a JavaScript number would round it


def _store_alerts(client: TestClient, obj: SimulatedObject) -> None:
    decoder = Decoder()
    for i in range(len(obj.t)):
        r = client.post("/v1/classify", content=decoder.encode(alert_at(obj, i), latest_version()),
                        params={"store": "true"}, headers={"content-type": "application/avro"})
        assert r.status_code == 200, r.text


def _from_curve(curve, object_id: int, ra: float, dec: float) -> SimulatedObject:
    shift = 61000.0 - curve.t[-1]
    return SimulatedObject("real", object_id, ra, dec, curve.t + shift, np.asarray(curve.flux, np.float32),
                           np.asarray(curve.flux_err, np.float32), np.array([BANDS[b] for b in curve.band]))


def _simulated_supernova(object_id: int) -> SimulatedObject:
    t = np.arange(60500.0, 60560.0, 3.0)
    flux = 20000 * np.exp(-(t - 60515) / 20) / (1 + np.exp(-(t - 60512) / 3))
    band = np.array(["g", "r"] * (len(t) // 2) + ["g"] * (len(t) % 2))
    return SimulatedObject("sn", object_id, 150.0, 2.0, t, flux.astype(np.float32),
                           np.full(len(t), 300.0, np.float32), band)


@pytest.fixture
def objects(tmp_path):
    """(settings, [(label, object)]): real objects where ../shared/data is present."""
    data = Path(__file__).resolve().parents[2] / "shared" / "data"
    if data.is_dir():
        from models.train import datasets

        rrl = next(c for c in datasets.load_sesar(data) if len(c.t) >= 40)
        sn = next(c for c in datasets.load_ztf_sne(data) if c.class_id == 2222 and len(c.t) >= 20)
        chosen = [("RR Lyrae (Sesar 2010, Stripe 82)", _from_curve(rrl, BIG_ID, 10.5, -1.2)),
                  ("SN Ia (ZTF)", _from_curve(sn, BIG_ID + 1, 150.1, 2.2))]
    else:
        chosen = [("RR Lyrae (simulated)", long_lived_object(60, BIG_ID)),
                  ("SN (simulated)", _simulated_supernova(BIG_ID + 1))]
    return Settings(data_dir=tmp_path), chosen


def test_the_object_page_draws_the_light_curve_and_the_classifications(objects):
    settings, chosen = objects
    with TestClient(create_app(settings, registry=Registry())) as client:
        for _label, obj in chosen:
            _store_alerts(client, obj)
        for _label, obj in chosen:
            page = client.get(f"/objects/{obj.dia_object_id}")
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            html = page.text
            assert f"<span id='object-id'>{obj.dia_object_id}</span>" in html, "the 64-bit id, exact"
            for band in set(obj.band.tolist()):
                drawn = len(re.findall(f"class='pt' data-band='{band}'", html))
                assert drawn == int((obj.band == band).sum()), band
            assert html.count("class='probabilities'") == 2  # one plot per classifier
            assert "data-classifier='rrlyrae'" in html and "data-classifier='supernova'" in html
            assert f"/v1/objects/{obj.dia_object_id}/lightcurve" in html
        assert client.get("/objects/7").status_code == 404
        found = client.get("/objects", params={"q": str(BIG_ID)}, follow_redirects=False)
        assert found.status_code == 303 and found.headers["location"] == f"/objects/{BIG_ID}"
        cone = client.get("/objects", params={"q": f"{chosen[0][1].ra} {chosen[0][1].dec} 5"}).text
        assert f">{BIG_ID}</a>" in cone and f">{BIG_ID + 1}</a>" not in cone
        assert client.get("/objects", params={"q": "not a thing"}).status_code == 422
        assert client.get("/objects").status_code == 200  # notable recent objects
        status = client.get("/v1/status").json()
        assert all(isinstance(n["diaObjectId"], str) for n in status["notable"])


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (.ci/run installs it)")
def test_the_explorer_in_chromium(objects, tmp_path):
    from playwright.sync_api import sync_playwright

    settings, chosen = objects
    with TestClient(create_app(settings, registry=Registry())) as client:
        for _label, obj in chosen:
            _store_alerts(client, obj)
    proc, url = serve({}, settings.data_dir)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 1400})
                for i, (label, obj) in enumerate(chosen):
                    page.goto(f"{url}/objects/{obj.dia_object_id}")
                    page.wait_for_selector("#lightcurve circle.pt")
                    assert page.text_content("#object-id") == str(obj.dia_object_id)
                    for band in set(obj.band.tolist()):
                        assert page.locator(f"#lightcurve circle[data-band='{band}']").count() == \
                            int((obj.band == band).sum())
                    assert page.locator("svg.probabilities polyline.prob").count() >= 2
                    assert page.locator("#latest tr.latest").count() == 2
                    shot = tmp_path / f"explorer-{i}.png"
                    page.screenshot(path=str(shot), full_page=True)
                    assert shot.stat().st_size > 20_000, label
                    if os.environ.get("ALERT_CLASSIFIER_UPDATE_SCREENSHOT"):
                        shutil.copy(shot, DOCS / ["explorer-variable-star.png", "explorer-supernova.png"][i])
                # the search box finds an object by its 64-bit id, exactly
                page.goto(f"{url}/objects")
                page.fill("#search input", str(BIG_ID + 1))
                page.click("#search button")
                page.wait_for_selector("#object-id")
                assert page.text_content("#object-id") == str(BIG_ID + 1)
            finally:
                browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
