"""`train` itself: what it needs no dataset for."""

from __future__ import annotations

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from models.train import train


class _Stop(Exception):
    pass


def test_training_runs_on_a_fixed_thread_count_whatever_the_environment(monkeypatch, tmp_path):
    # Some fits differ with the OpenMP thread count (the anomaly card's seed-averaged mixture), so
    # `make train` (OMP_NUM_THREADS=1) and a bare `alert-classifier train` must train alike.
    seen: dict[str, int] = {}

    def first_step(*_args, **_kwargs):
        seen.update({pool["user_api"]: pool["num_threads"] for pool in threadpool_info()})
        raise _Stop

    monkeypatch.setattr(train, "load_training_set", first_step)
    for outside in (1, 4):
        seen.clear()
        with threadpool_limits(outside), pytest.raises(_Stop):
            train.train_all(tmp_path, tmp_path)
        assert "openmp" in seen  # scikit-learn's OpenMP runtime is loaded by then
        assert set(seen.values()) == {train.TRAIN_THREADS}, (outside, seen)
