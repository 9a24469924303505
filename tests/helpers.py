"""Small helpers shared by tests."""

from __future__ import annotations

import math


def same(a: object, b: object) -> bool:
    """Structural equality where NaN equals NaN (Avro floats may hold NaN)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def serve(env_extra: dict, data_dir) -> tuple:
    """Start `alert-classifier serve` on a free port; return (process, base URL) once /livez answers."""
    import subprocess
    import sys
    import time

    import httpx

    from streaming.local_broker import free_port

    port = free_port()
    env = {"ALERT_CLASSIFIER_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
           **env_extra}
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/livez", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the API did not start: {proc.stderr.read().decode()[-2000:]}")


def long_lived_object(n: int = 90, dia_object_id: int = 4242):
    """A pulsating object detected n times over 2.5 years: each alert carries only its last year."""
    import numpy as np

    from streaming.simulate import SimulatedObject

    rng = np.random.default_rng(11)
    t = np.sort(rng.uniform(60000.0, 60900.0, n))
    band = rng.choice(["g", "r", "i"], n)
    flux = (3000 * np.sin(2 * np.pi * t / 0.57) + rng.normal(0, 50, n)).astype(np.float32)
    return SimulatedObject("rrlyrae", dia_object_id, 10.0, -30.0, t, flux, np.full(n, 50.0, np.float32), band)


def refuse_sources(store, source_ids) -> None:
    """A trigger that makes the real database refuse result rows of these diaSourceIds, as a
    constraint would: what a permanent store error looks like, on SQLite and PostgreSQL."""
    ids = ", ".join(str(int(i)) for i in source_ids)
    if store.is_postgres:
        statements = [
            "CREATE FUNCTION refuse_rows() RETURNS trigger AS $$ BEGIN IF NEW.dia_source_id IN "
            f"({ids}) THEN RAISE EXCEPTION 'refused by the test trigger' USING ERRCODE = "
            "'check_violation'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_rows BEFORE INSERT ON classifications FOR EACH ROW "
            "EXECUTE FUNCTION refuse_rows()"]
    else:
        statements = [f"CREATE TRIGGER refuse_rows BEFORE INSERT ON classifications WHEN NEW.dia_source_id "
                      f"IN ({ids}) BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END"]
    with store._connection() as conn:
        for sql in statements:
            conn.cursor().execute(sql)
