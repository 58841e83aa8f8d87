"""The record engine: learning, scoring, explanations in field names, retraining."""

from __future__ import annotations

import numpy as np
import pytest

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


def test_score_many_is_score_for_each_record_and_learns_nothing():
    engine = anomaly.Engine(min_training_records=100, seed=1)
    probe = orders(40, seed=9) + [{"amount": 99812.0, "country": "KP", "paid": True, "customer": {"age_days": 5}}]
    assert engine.score_many("shop", probe) == [{"status": "learning", "seen": 0, "needed": 100}] * len(probe)
    engine.observe_many("shop", orders(150))
    seen = engine.stats("shop")["seen"]
    many = engine.score_many("shop", probe)
    assert many == [engine.score("shop", r) for r in probe]
    assert many[-1]["is_anomaly"] and not many[0]["is_anomaly"]
    assert engine.stats("shop")["seen"] == seen
    assert engine.score_many("shop", []) == []
    with pytest.raises(anomaly.exceptions.InvalidRecordError, match="record 2"):
        engine.score_many("shop", probe[:2] + [[1, 2]])


def test_sensitivity_and_training():
    engine = anomaly.Engine(min_training_records=50, sensitivity=0.1, seed=2)
    engine.observe_many("k", orders(80, seed=3))
    flagged = [engine.score("k", r)["is_anomaly"] for r in engine.history("k")]
    assert 0.03 < np.mean(flagged) < 0.2
    version = engine.train("k")
    assert version == engine.model_info("k")["version"] >= 2
    engine.set_sensitivity("k", "auto")
    assert engine.model_info("k")["threshold"] == 0.5
    # Clearing forgets the history and the baseline; the model stays, as its stored versions do.
    assert engine.clear("k") == 80 and engine.history("k") == []
    assert engine.model_info("k")["version"] == version + 1


def rows(n, start=0):
    """A table: an increasing id, a UUID, a creation time anywhere in a week, and measurements."""
    out = []
    for k in range(start, start + n):
        minute = (k * 7919) % (7 * 1440)
        out.append(
            {
                "id": k + 1,
                "ref": f"{k:08x}-1234-4abc-8def-0123456789ab",
                "created_at": f"2026-03-{2 + minute // 1440:02d}T{minute // 60 % 24:02d}:{minute % 60:02d}:00Z",
                "amount": 20.0 + (k * 37) % 180,
                "country": ["US", "FR", "DE"][k % 3],
            }
        )
    return out


def test_field_roles_inferred_and_pinned():
    engine = anomaly.Engine(min_training_records=100, drift=False, seed=1)
    engine.observe_many("t", rows(200))
    fields = {f["field"]: f for f in engine.model_info("t")["fields"]}
    assert fields["id"]["role"] == "identifier" and fields["id"]["columns"] == 0
    assert fields["ref"]["role"] == "identifier" and "UUID" in fields["ref"]["rule"]
    assert fields["created_at"]["role"] == "timestamp"
    assert fields["amount"]["role"] == "measurement"
    assert not any(f.startswith("id") or f.endswith(".epoch") for f in engine.model_info("t")["features"])
    engine.set_field_roles("t", {"amount": "ignore", "country": "category"})
    info = engine.model_info("t")
    assert info["reason"] == {"reason": "field_roles"}
    assert {f["field"]: f["rule"] for f in info["fields"]}["amount"] == "pinned"
    pinned = anomaly.Engine(min_training_records=100, field_roles={"amount": "category"}, drift=False)
    pinned.observe_many("t", rows(120))
    assert {f["field"]: f["role"] for f in pinned.model_info("t")["fields"]}["amount"] == "category"
    with pytest.raises(anomaly.InvalidParameterError, match="identifier"):
        anomaly.Engine(field_roles={"id": "key"})
    assert anomaly.FIELD_ROLES == ("measurement", "category", "timestamp", "identifier", "text", "ignore")


def test_range_rule_and_batches():
    engine = anomaly.Engine(min_training_records=100, drift=False, seed=3)
    engine.observe_batch("t", rows(300))
    batch = rows(20, start=300)
    batch[5]["amount"] = 1_000_000.0
    report = engine.observe_batch("t", batch)
    assert 5 in report["flagged"]
    verdict = report["outcomes"][5]
    assert verdict["is_anomaly"] and verdict["flagged_by"]["range_rule"]
    explanation = report["explanations"]["5"]
    assert explanation["range_violations"][0]["field"] == "amount"
    assert "far outside" in explanation["rationale"]
    assert report["model"]["version"] >= 1
    assert "amount" in report["comparison_summary"]
    assert engine.statistics("t")["fields"]["amount"]["numeric"]["max"] < 1_000
    off = anomaly.Engine(min_training_records=100, drift=False, range_rule=False)
    off.observe_batch("t", rows(300))
    assert not off.score("t", batch[5])["flagged_by"]["range_rule"]


def test_bounds():
    engine = anomaly.Engine(min_training_records=20, max_keys_in_memory=3, max_columns=40, drift=False)
    for k in range(10):
        engine.observe_many(f"k{k}", rows(25))
    totals = engine.totals()
    assert totals["keys_in_memory"] <= 3 and totals["evicted"] >= 7
    assert engine.model_info("k0")["version"] == 1, "an evicted key comes back"
    wide = [{**{f"f{i}_{j}": j for j in range(200)}, "kind": "click"} for i in range(30)]
    engine.observe_many("wide", wide)
    info = engine.model_info("wide")
    # Trained on the first 20 records: 4,001 fields, of which the 40 columns hold 20.
    assert len(info["features"]) <= 40 and info["left_out_fields"] > 3_900
    with pytest.raises(anomaly.InvalidParameterError):
        anomaly.Engine(max_keys_in_memory=0)
