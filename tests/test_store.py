"""The store on SQLite and (where a DSN is given) PostgreSQL: same tests on both."""

from __future__ import annotations

import math

import pytest

from service import store as store_module
from service.store import Cone, Query, Store
from streaming.pipeline import WithPending
from streaming.records import ClassificationRecord, Detection
from tests.conftest import POSTGRES_DSN


def record(source_id: int, classifier: str = "rrlyrae", *, ra=10.0, dec=-5.0, mjd=60000.0, p=0.9,
           object_id: int | None = 7, reason=None) -> ClassificationRecord:
    classes = ([{"classId": 300, "probability": 1.0}] if reason else
               [{"classId": 200, "probability": round(1 - p, 6)}, {"classId": 2323, "probability": p}])
    return ClassificationRecord(source_id, object_id, source_id, classifier, "1.0.0", ra, dec, mjd, classes,
                                reason, "t", 0, source_id, 1_700_000_000_000, 1_700_000_000_500)


def test_upsert_is_idempotent(store):
    store.upsert([record(1), record(2), record(1, "supernova")])
    store.upsert([record(1, p=0.3), record(2)])  # replay with a changed probability
    assert store.count() == 3
    rows = {r["classifier"]: r for r in store.source_rows(1)}
    assert rows["rrlyrae"]["top_probability"] == pytest.approx(0.7)
    assert rows["rrlyrae"]["classifications"][1] == {"classId": 2323, "probability": 0.3}
    # the probability index follows the upsert
    found = store.query(Query(classifier="rrlyrae", class_id=2323, min_probability=0.5))
    assert [r["dia_source_id"] for r in found] == [2]


def test_migrations_are_versioned_and_rerun_safely(store, tmp_path):
    store.upsert([record(1)])
    again = Store(store.dsn)  # opening again applies nothing twice
    assert again.count() == 1
    again.close()


def test_filters_and_cursor_pagination(store):
    store.upsert([record(i, mjd=60000 + i, p=(i % 10) / 10) for i in range(1, 51)])
    page1 = store.query(Query(limit=20))
    page2 = store.query(Query(limit=20, after_id=page1[-1]["id"]))
    page3 = store.query(Query(limit=20, after_id=page2[-1]["id"]))
    ids = [r["dia_source_id"] for r in page1 + page2 + page3]
    assert ids == list(range(1, 51)) and len(page3) == 10
    assert {r["dia_source_id"] for r in store.query(Query(since_mjd=60010, until_mjd=60012))} == {10, 11, 12}
    high = store.query(Query(class_id=2323, min_probability=0.85, limit=100))
    assert {r["dia_source_id"] for r in high} == {i for i in range(1, 51) if i % 10 == 9}
    assert store.query(Query(classifier="supernova")) == []


@pytest.mark.parametrize("floor", [0.0, 0.45, 0.85, 0.95])
def test_class_filters_page_through_every_match(store, floor):
    """Selective filters are collected from the index, unselective ones probed in id order
    (SELECTIVE_MATCHES per requested row decides): both must page through exactly the matches."""
    store.upsert([record(i, p=(i % 20) / 20) for i in range(1, 301)])
    expected = [i for i in range(1, 301) if (i % 20) / 20 >= floor]
    seen, after = [], 0
    while True:
        page = store.query(Query(class_id=2323, min_probability=floor, limit=2, after_id=after))
        if not page:
            break
        seen += [r["dia_source_id"] for r in page]
        after = page[-1]["id"]
    assert seen == expected


def test_object_history(store):
    store.upsert([record(1, mjd=60001, object_id=42), record(2, mjd=60003, object_id=42),
                  record(3, mjd=60002, object_id=43)])
    assert [r["dia_source_id"] for r in store.object_history(42)] == [1, 2]


def test_detections_are_kept_once_and_recalled_per_object(store):
    big = 2**62 + 7
    store.upsert([record(1, object_id=42)], [Detection(big + 2, 42, 60010.0, 2, 150.5, 3.25),
                                             Detection(big + 1, 42, 60000.0, 1, -20.0, 2.5),
                                             Detection(big + 3, 43, 60005.0, 3, 7.0, 1.0)])
    store.upsert([], [Detection(big + 1, 42, 60000.0, 1, -20.0, 2.5)])  # a replayed alert
    assert store.count_sources() == 3
    history = store.recall({42: 1e7, 43: 1e7, 44: 1e7})
    assert set(history) == {42, 43}  # no row: no history
    lc = history[42]
    assert lc.t.tolist() == [60000.0, 60010.0] and lc.source_id.tolist() == [big + 1, big + 2]
    assert lc.flux.tolist() == [-20.0, 150.5] and lc.flux_err.tolist() == [2.5, 3.25]
    assert lc.band.tolist() == [1, 2]
    assert store.recall({}) == {}
    # only what an alert does not carry: the points before the given time
    assert store.recall({42: 60005.0})[42].source_id.tolist() == [big + 1]
    assert store.recall({42: 60000.0}) == {}


def test_detections_still_being_written_are_recalled_with_the_stored_ones(store):
    """A stream worker processes a batch beside the previous batch's writes: its history is the
    store's plus those pending detections, whichever thread finishes first."""
    store.upsert([], [Detection(1, 42, 60000.0, 1, 5.0, 1.0), Detection(2, 42, 60010.0, 1, 6.0, 1.0)])
    pending = [Detection(2, 42, 60010.0, 1, 6.0, 1.0),  # written already: once
               Detection(3, 42, 60005.0, 2, 7.0, 1.5), Detection(4, 42, 60020.0, 1, 8.0, 1.0),
               Detection(5, 43, 60001.0, 3, 9.0, 2.0), Detection(6, 99, 60001.0, 3, 9.0, 2.0)]
    history = WithPending(store, pending, {42, 43, 99})
    got = history.recall({42: 60015.0, 43: 1e7, 44: 1e7})
    assert set(got) == {42, 43}
    assert got[42].source_id.tolist() == [1, 3, 2] and got[42].t.tolist() == [60000.0, 60005.0, 60010.0]
    assert got[42].band.tolist() == [1, 2, 1] and got[42].flux_err.tolist() == [1.0, 1.5, 1.0]
    assert got[43].flux.tolist() == [9.0] and got[43].band.dtype == store.recall({42: 1e7})[42].band.dtype
    assert WithPending(store, pending, {42}).recall({44: 1e7}) == {}


def test_recall_keeps_the_latest_points_of_a_long_history(store):
    store.upsert([], [Detection(i, 5, 60000.0 + i, 1, float(i), 1.0) for i in range(40)])
    lc = store.recall({5: 1e7}, max_points=25)[5]
    assert lc.t.tolist() == [60000.0 + i for i in range(15, 40)]


def test_recall_reads_many_objects_in_chunks(store):
    store.upsert([], [Detection(1000 + i, i, 60000.0 + i, 2, float(i), 1.0) for i in range(1200)])
    history = store.recall(dict.fromkeys(range(1200), 1e7))
    assert len(history) == 1200 and history[1100].flux.tolist() == [1100.0]


def _angle_arcsec(ra1, dec1, ra2, dec2) -> float:
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    c = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(r1 - r2)
    return math.degrees(math.acos(max(-1.0, min(1.0, c)))) * 3600


@pytest.mark.parametrize(("ra", "dec", "radius"), [
    (0.0, 0.0, 10.0),        # across RA 0/360
    (359.999, 20.0, 30.0),   # centre just below 360
    (45.0, 89.999, 60.0),    # at the north pole: every RA is near
    (200.0, -89.995, 40.0),  # south pole
    (180.0, 45.0, 3600.0),   # a wide cone
])
def test_cone_search_edges(store, ra, dec, radius):
    points = []
    i = 0
    for dra in (-0.02, -0.004, -0.001, 0.0, 0.001, 0.004, 0.02):
        for ddec in (-0.01, -0.002, 0.0, 0.002, 0.01):
            for spread in (1, 100, 900):  # also far-off RAs that matter only near the poles
                i += 1
                points.append(((ra + dra * spread) % 360, max(-90, min(90, dec + ddec)), i))
    store.upsert([record(i, ra=pra, dec=pdec) for pra, pdec, i in points])
    found = {r["dia_source_id"] for r in store.query(Query(cone=Cone(ra, dec, radius), limit=1000))}
    expected = {i for pra, pdec, i in points if _angle_arcsec(ra, dec, pra, pdec) <= radius * (1 - 1e-9)}
    borderline = {i for pra, pdec, i in points if abs(_angle_arcsec(ra, dec, pra, pdec) - radius) < 1e-3}
    assert expected - borderline <= found
    assert found - expected <= borderline
    assert expected, "the case has points inside the cone"


def test_concurrent_writers_of_shared_detections_never_deadlock(store):
    """Two workers write overlapping detections (alerts of one object on two partitions) and results
    (a replay during a rebalance), listed in opposite orders: the store writes them in one key order,
    so neither waits on the other in a cycle (PostgreSQL detected a deadlock here before)."""
    import threading

    shared = [Detection(1000 + i, 9, 60000.0 + i, 2, 1.0, 0.1) for i in range(300)]
    results = [record(i, object_id=9) for i in range(1, 151)]
    errors: list[Exception] = []

    def writer(detections: list[Detection], records: list[ClassificationRecord]) -> None:
        mine = Store(store.dsn)
        try:
            for _ in range(15):
                mine.upsert(records, detections)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            mine.close()

    threads = [threading.Thread(target=writer, args=args)
               for args in ((shared, results), (shared[::-1], results[::-1]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert store.count_sources() == 300 and store.count() == 150


def test_prune_results_deletes_old_rows_with_their_probabilities(store):
    store.upsert([record(i, clf, mjd=60000.0 + i) for i in range(10) for clf in ("rrlyrae", "supernova")])
    assert store.newest_mjd() == 60009.0
    steps = list(store.prune_results(60005.0, batch=3))
    assert sum(steps) == 10 and max(steps) <= 3  # five old alerts x two classifiers, in short steps
    assert store.count() == 10 and store._count("probabilities") == 20  # no orphan probabilities
    assert store.source_rows(4) == [] and len(store.source_rows(5)) == 2
    found = store.query(Query(classifier="rrlyrae", class_id=2323, min_probability=0.5))
    assert [r["dia_source_id"] for r in found] == [5, 6, 7, 8, 9]
    assert list(store.prune_results(60005.0)) == []  # nothing left to do


def test_prune_history_sweeps_every_object_once(store):
    # object ids across the whole 64-bit range, including both ends
    objects = [-(2**63), -5, 0, 3, 2**40, *range(100, 140), 2**63 - 1]
    store.upsert([], [Detection(1000 * k + i, oid, 60000.0 + i, 1, float(i), 1.0)
                      for k, oid in enumerate(objects) for i in range(10)])
    assert store.newest_mjd() == 60009.0  # no results: from the detections
    deleted = sum(store.prune_history(60006.0, batch=7))
    assert deleted == 6 * len(objects) and store.count_sources() == 4 * len(objects)
    history = store.recall(dict.fromkeys(objects, 1e7))
    assert set(history) == set(objects)
    assert all(lc.t.tolist() == [60006.0, 60007.0, 60008.0, 60009.0] for lc in history.values())
    assert sum(store.prune_history(60006.0)) == 0


def test_prune_command_counts_back_from_the_newest_observation(tmp_path, monkeypatch, capsys):
    from service.cli import main

    path = tmp_path / "store.sqlite3"
    s = Store(path)
    s.upsert([record(i, mjd=60000.0 + i) for i in range(30)],
             [Detection(i, 7, 60000.0 + i, 1, 1.0, 1.0) for i in range(30)])
    s.close()
    monkeypatch.setenv("ALERT_CLASSIFIER_STORE_DSN", str(path))
    assert main(["prune", "--results-days", "10", "--history-days", "20", "--batch", "4"]) == 0
    out, err = capsys.readouterr()
    assert "results: 19 rows observed before MJD 60019.000 deleted" in out
    assert "history: 9 rows observed before MJD 60009.000 deleted" in out
    assert "[prune] results:" in err  # progress while it runs
    s = Store(path)
    assert s.count() == 11 and s.count_sources() == 21
    s.close()
    assert main(["prune"]) == 2  # says what to pass
    assert "pass --results-days" in capsys.readouterr().err


def test_rows_the_database_refuses_are_a_permanent_error_naming_it(store):
    from models.errors import StoreRejected
    from tests.helpers import refuse_sources

    refuse_sources(store, [13])
    with pytest.raises(StoreRejected, match="refused by the test trigger") as caught:
        store.upsert([record(12), record(13), record(14)])
    assert not caught.value.transient and caught.value.reason == "store_rejected"
    assert store.count() == 0, "the transaction rolled back as a whole"
    store.upsert([record(12), record(14)])  # the connection is still good
    assert store.count() == 2
    with pytest.raises(StoreRejected, match="a probability is not a finite number"):
        store.upsert([record(15, p=float("nan"))])  # a probability that is not a number


def test_a_lost_connection_is_transient_and_the_next_call_reconnects(store):
    """A PostgreSQL restart (or any lost connection): one StoreError, retried by the worker; the
    store then opens a fresh connection instead of failing for ever on the dead one."""
    from models.errors import StoreError

    if not store.is_postgres:
        pytest.skip("a lost server connection is a PostgreSQL case")
    import psycopg

    store.upsert([record(1)])
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as admin:  # what a restart does to sessions
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                      "AND datname = current_database() AND backend_type = 'client backend'")
    with pytest.raises(StoreError) as caught:
        store.upsert([record(2)])
    assert caught.value.transient
    store.upsert([record(2)])
    assert store.count() == 2


def test_many_results_are_upserted_once_each_across_statement_chunks(store, monkeypatch):
    """SQLite writes results as multi-row statements: a replay with new values, split across
    statements otherwise, updates every row (and its probabilities) once, in either store."""
    monkeypatch.setattr(store_module, "ROWS_PER_INSERT", 7)
    store.upsert([record(i, c) for i in range(1, 21) for c in ("rrlyrae", "supernova")])
    store.upsert([record(i, "rrlyrae", p=0.3 if i % 2 else 0.9) for i in range(1, 21)])
    assert store.count() == 40
    for i in (1, 2, 13, 20):
        rows = {r["classifier"]: r for r in store.source_rows(i)}
        assert rows["rrlyrae"]["classifications"][1]["probability"] == (0.3 if i % 2 else 0.9)
        assert rows["supernova"]["classifications"][1]["probability"] == 0.9
    low = store.query(Query(classifier="rrlyrae", class_id=2323, min_probability=0.8, limit=100))
    assert sorted(r["dia_source_id"] for r in low) == list(range(2, 21, 2)), "probabilities updated too"


def test_many_detections_go_in_once_each_across_statement_chunks(store, monkeypatch):
    """SQLite writes detections as multi-row statements: rows split across statements, repeats within
    and across statements and a replay all end as one row each, in either store."""
    monkeypatch.setattr(store_module, "ROWS_PER_INSERT", 7)
    rows = [Detection(1000 + i, 50 + i % 4, 60000.0 + i, i % 6, float(i), 0.5) for i in range(40)]
    store.upsert([], rows + rows[5:12])  # repeats of rows in other chunks, and within one
    assert store.count_sources() == 40
    store.upsert([], rows)
    assert store.count_sources() == 40
    history = store.recall({50 + k: 1e7 for k in range(4)})
    assert sorted(int(s) for lc in history.values() for s in lc.source_id) == [1000 + i for i in range(40)]
    assert history[51].flux.tolist() == [float(i) for i in range(40) if i % 4 == 1]


def test_sqlite_checkpoints_run_in_the_stores_own_thread(tmp_path, monkeypatch):
    """The write-ahead log reaches the database file without a writer's commit crossing SQLite's
    threshold (raised high here), and close() stops the thread."""
    import time

    monkeypatch.setattr(store_module, "CHECKPOINT_INTERVAL_S", 0.05)
    s = Store(tmp_path / "store.sqlite3")
    db = tmp_path / "store.sqlite3"
    before = db.stat().st_size
    s.upsert([], [Detection(1000 + i, 7, 60000.0 + i, i % 6, float(i), 0.5) for i in range(5000)])
    assert (tmp_path / "store.sqlite3-wal").stat().st_size > 0
    deadline = time.monotonic() + 10
    while db.stat().st_size == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert db.stat().st_size > before  # pages copied into the database by the checkpoint thread
    thread = s._checkpointer.thread
    s.close()
    thread.join(2)
    assert not thread.is_alive()
    assert Store(db).count_sources() == 5000


def test_a_batch_with_detections_already_kept_stores_everything_once(store):
    """On PostgreSQL the detections go in by COPY; a row already kept fails it, and the batch's rows
    then go through a staging table in the same transaction: the results and the new detections of
    that batch are all stored, nothing twice."""
    old = [Detection(2000 + i, 9, 60000.0 + i, 1, float(i), 0.5) for i in range(10)]
    store.upsert([record(1)], old)
    new = [Detection(2100 + i, 9, 60100.0 + i, 2, float(i), 0.5) for i in range(5)]
    store.upsert([record(2), record(2, "supernova")], old[3:] + new)
    assert store.count_sources() == 15 and store.count() == 3
    assert len(store.recall({9: 1e7})[9].t) == 15


def test_a_replayed_batch_updates_its_results_in_place(store):
    """New results go in by COPY on PostgreSQL; a batch whose results exist (a replay) goes through the
    upsert instead, in the same transaction as its detections: rows updated, none added."""
    first, second = Detection(3000, 7, 60000.0, 1, 1.0, 0.1), Detection(3001, 7, 60001.0, 1, 2.0, 0.1)
    store.upsert([record(1, p=0.2), record(1, "supernova"), record(2)], [first])
    store.upsert([record(1, p=0.8), record(2), record(3)], [first, second])
    assert store.count() == 4 and store.count_sources() == 2
    rows = {r["classifier"]: r for r in store.source_rows(1)}
    assert rows["rrlyrae"]["top_probability"] == pytest.approx(0.8)
    found = store.query(Query(classifier="rrlyrae", class_id=2323, min_probability=0.5))
    assert sorted(r["dia_source_id"] for r in found) == [1, 2, 3]


def test_sqlite_writers_get_the_larger_page_cache_and_readers_keep_the_default(tmp_path):
    """The connection that upserts (a worker's sinks) caches WRITER_CACHE_KIB of pages and keeps its
    temporary files in memory; a reader thread's connection keeps SQLite's defaults, and a writer's
    new connection gets them again."""
    import threading

    store = Store(tmp_path / "cache.sqlite3")

    def cache_kib() -> tuple[int, int]:
        with store._connection() as conn:
            return (-conn.execute("PRAGMA cache_size").fetchone()[0],
                    conn.execute("PRAGMA temp_store").fetchone()[0])

    default = cache_kib()
    assert default[0] < store_module.WRITER_CACHE_KIB and default[1] != 2  # 2: MEMORY
    store.upsert([record(1)])
    assert cache_kib() == (store_module.WRITER_CACHE_KIB, 2)
    seen: list[tuple[int, int]] = []
    reader = threading.Thread(target=lambda: (store.query(Query(limit=5)), seen.append(cache_kib())))
    reader.start()
    reader.join()
    assert seen == [default]
    store._discard(store._local.conn)  # a lost connection: the next upsert opens a fresh one
    store.upsert([record(2)])
    assert cache_kib() == (store_module.WRITER_CACHE_KIB, 2) and store.count() == 2
    store.close()


def test_sqlite_writers_take_turns_through_the_lock_beside_the_file(tmp_path):
    """While another process holds `<file>-writer.lock`, an upsert waits for it (in the kernel, not
    in SQLite's polling busy handler) and then writes; its own turn ends with its transaction."""
    import fcntl
    import os
    import threading
    import time

    path = str(tmp_path / "turns.sqlite3")
    store = Store(path)
    other = os.open(path + store_module.WRITER_LOCK_SUFFIX, os.O_RDWR | os.O_CREAT)  # another writer
    fcntl.flock(other, fcntl.LOCK_EX)
    writer = threading.Thread(target=store.upsert, args=([record(1)],))
    writer.start()
    time.sleep(0.3)
    assert writer.is_alive() and store.count() == 0  # waiting for its turn, nothing written yet
    fcntl.flock(other, fcntl.LOCK_UN)
    writer.join(10)
    assert not writer.is_alive() and store.count() == 1
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again: the upsert's turn is over
    fcntl.flock(other, fcntl.LOCK_UN)
    os.close(other)
    store.close()
