"""``anomaly.Engine(store=...)``: the engine's models and history in a database, restored by a new engine.

SQLite always runs (a temporary file). PostgreSQL and MariaDB run against the servers named by ``TEST_PG_URL`` and
``TEST_MYSQL_URL`` and are skipped, saying so, when those are unset (``.ci/run`` sets them).
"""

from __future__ import annotations

import gc
import os
import uuid
import warnings

import numpy as np
import pytest

import anomaly
from anomaly.exceptions import PersistenceError


def records(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "amount": float(100 + 10 * rng.standard_normal()),
            "country": str(rng.choice(["FR", "DE", "ES"])),
            "items": int(rng.integers(1, 5)),
        }
        for _ in range(n)
    ]


def restarts_with_its_models(url: str) -> None:
    key = f"orders-{uuid.uuid4().hex[:8]}"
    probe = records(50, 2) + [{"amount": 5000.0, "country": "KP", "items": 90}]
    first = anomaly.Engine(store=url, min_training_records=200, seed=3)
    first.observe_many(key, records(300, 1))
    info = first.model_info(key)
    assert info is not None
    version = info["version"]
    before = first.score_many(key, probe)
    assert before[-1]["is_anomaly"]
    first.close()
    del first
    gc.collect()

    second = anomaly.Engine(store=url, min_training_records=200, seed=3)
    after = second.score_many(key, probe)
    assert [o["score"] for o in after] == [o["score"] for o in before], "the stored model scores the same"
    assert second.model_info(key)["version"] == version, "restored, not retrained"
    assert len(second.history(key)) == 300
    assert second.totals()["restored"] >= 1
    second.close()


def test_a_sqlite_engine_restarts_with_its_models(tmp_path):
    url = f"sqlite:///{tmp_path}/nested/anomaly.db"
    restarts_with_its_models(url)
    assert (tmp_path / "nested" / "anomaly.db").is_file()


def server_url(variable: str) -> str:
    url = os.environ.get(variable)
    if not url:
        msg = f"SKIPPED: {variable} is not set, so the store is not tried on that server"
        warnings.warn(msg)
        pytest.skip(msg)
    return url


def test_a_postgres_engine_restarts_with_its_models():
    restarts_with_its_models(server_url("TEST_PG_URL"))


def test_a_mariadb_engine_restarts_with_its_models():
    restarts_with_its_models(server_url("TEST_MYSQL_URL"))


def test_an_unreachable_store_warns_and_what_needs_it_raises():
    # Nothing listens on port 9 of the loopback: the connection is refused at once.
    with pytest.warns(RuntimeWarning, match="does not answer"):
        engine = anomaly.Engine(store="postgres://nobody@127.0.0.1:9/none", min_training_records=50, seed=1)
    with pytest.raises(PersistenceError):
        # A key's first use reads its stored history, which needs the database.
        engine.observe("k", {"x": 1.0})
    with pytest.raises(PersistenceError, match="unavailable"):
        engine.close()


def test_bad_store_urls_are_typed_errors(tmp_path):
    with pytest.raises(PersistenceError):
        anomaly.Engine(store="redis://127.0.0.1/0")
    with pytest.raises(PersistenceError):
        anomaly.Engine(store=f"sqlite:///{tmp_path}/missing/x.db?mode=ro")
