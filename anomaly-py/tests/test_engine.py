"""The record engine: learning, scoring, explanations in field names, retraining."""

from __future__ import annotations

import numpy as np

import anomaly


def orders(n, seed=0):
    rng = np.random.default_rng(seed)
    return [
        {
            "amount": round(float(rng.gamma(4.0, 10.0)), 2),
            "country": str(rng.choice(["FR", "DE", "ES"])),
            "paid": bool(rng.random() < 0.9),
            "customer": {"age_days": int(rng.integers(10, 2000))},
        }
        for _ in range(n)
    ]


def test_learning_then_scoring():
    engine = anomaly.Engine(min_training_records=50, seed=1)
    outcomes = engine.observe_many("shop", orders(60))
    assert outcomes[0] == {"status": "learning", "seen": 1, "needed": 50}
    assert outcomes[48]["status"] == "learning"
    scored = [o for o in outcomes if o["status"] == "scored"]
    assert scored and all(o["model_version"] == 1 for o in scored)
    assert engine.keys() == ["shop"]
    assert engine.stats("shop")["seen"] == 60
    info = engine.model_info("shop")
    assert info["version"] == 1 and "amount" in info["features"]
    assert engine.params["min_training_records"] == 50


def test_explanations_in_field_names():
    engine = anomaly.Engine(min_training_records=100, seed=1)
    engine.observe_many("shop", orders(150))
    normal = engine.score("shop", {"amount": 40.0, "country": "FR", "paid": True, "customer": {"age_days": 500}})
    odd = {"amount": 99812.0, "country": "KP", "paid": True, "customer": {"age_days": 500}}
    verdict = engine.score("shop", odd)
    assert verdict["is_anomaly"] and verdict["score"] > normal["score"]
    e = engine.explain("shop", odd)
    assert e["verdict"]["score"] == verdict["score"]
    assert e["fields"][0]["field"] == "amount" and e["fields"][0]["unusual"]
    assert ["country", "KP"] in e["notes"]["unseen_categories"]
    assert "`amount`" in e["rationale"]
    assert anomaly.Engine(min_training_records=10).explain("empty", odd) is None


def test_sensitivity_and_training():
    engine = anomaly.Engine(min_training_records=50, sensitivity=0.1, seed=2)
    engine.observe_many("k", orders(80, seed=3))
    flagged = [engine.score("k", r)["is_anomaly"] for r in engine.history("k")]
    assert 0.03 < np.mean(flagged) < 0.2
    version = engine.train("k")
    assert version == engine.model_info("k")["version"] >= 2
    engine.set_sensitivity("k", "auto")
    assert engine.model_info("k")["threshold"] == 0.5
    assert engine.clear("k") == 80 and engine.model_info("k") is None
