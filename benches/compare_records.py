#!/usr/bin/env python3
"""The record engine from Python next to the pipeline it replaces, on the same JSON-like records, in one process.

The pipeline is the original SQL watcher's: records flattened to dotted keys, scikit-learn's ``FeatureHasher``
(dict input, 64 columns: numbers as values, strings as ``key=value`` one-hot), ``StandardScaler`` and
``IsolationForest`` (100 trees, 256 samples, ``n_jobs=1``), fitted on the training records; it is timed transforming
and scoring the probe records (``transform`` + ``score_samples``).

The engine (``anomaly.Engine``, 100 trees, retraining and drift off) learns the training records and trains once;
it is then timed on the probe records three ways:

* ``score_many``: one call that scores the batch without learning from it;
* ``observe_many``: one call that scores and learns each record (history, baseline);
* ``score`` called once per record.

Records have 10 fields of every kind the engine reads (numbers, a numeric string, categories, a boolean, a
date-time string, a nested object). Every time is the median of ``--repeat`` runs, and the ratio is the pipeline's
time over ours (> 1: faster than the pipeline).

Usage (after ``pip install ./anomaly-py`` and scikit-learn in the same environment, as ``scripts/test-python``
sets up in ``.venv``):

    .venv/bin/python benches/compare_records.py
    .venv/bin/python benches/compare_records.py --train 20000 --probe 100000 --repeat 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest
from sklearn.feature_extraction import FeatureHasher
from sklearn.preprocessing import StandardScaler

import anomaly


def records(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    amount = 100.0 + 20.0 * rng.random(n)
    quantity = rng.integers(1, 10, n)
    price = 5.0 + rng.random(n)
    country = rng.choice(["FR", "DE", "ES", "IT", "NL"], n)
    status = rng.choice(["paid", "shipped", "pending"], n)
    express = rng.random(n) < 0.2
    hour = rng.integers(0, 24, n)
    age = rng.integers(18, 80, n)
    discount = 5.0 * rng.random(n)
    return [
        {
            "amount": float(amount[i]),
            "quantity": int(quantity[i]),
            "price": f"{price[i]:.2f}",
            "country": str(country[i]),
            "status": str(status[i]),
            "express": bool(express[i]),
            "created_at": f"2024-03-{1 + i % 28:02d}T{hour[i]:02d}:{i % 60:02d}:00Z",
            "customer": {"tier": ["gold", "basic"][i % 2], "age": int(age[i])},
            "discount": float(discount[i]),
        }
        for i in range(n)
    ]


def flatten(record: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in record.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        elif isinstance(v, bool):
            out[key] = float(v)
        else:
            out[key] = v
    return out


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=20_000, help="training records (default 20,000)")
    parser.add_argument("--probe", type=int, default=100_000, help="records timed (default 100,000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each timing; the median is kept (default 5)")
    args = parser.parse_args()

    train, probe = records(args.train, 1), records(args.probe, 2)
    print(
        f"scikit-learn {sklearn.__version__}, anomaly {anomaly.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()}; {args.train:,} training records, {args.probe:,} timed, "
        f"median of {args.repeat} runs\n"
    )

    hasher = FeatureHasher(n_features=64, input_type="dict")
    scaler = StandardScaler()
    forest = IsolationForest(n_estimators=100, max_samples=256, random_state=0, n_jobs=1)
    forest.fit(scaler.fit_transform(hasher.transform([flatten(r) for r in train]).toarray()))

    def pipeline() -> None:
        x = scaler.transform(hasher.transform([flatten(r) for r in probe]).toarray())
        forest.score_samples(x)

    def engine() -> anomaly.Engine:
        e = anomaly.Engine(
            min_training_records=args.train, retrain_every=10**9, drift=False, n_estimators=100, seed=0
        )
        e.observe_many("orders", train)
        assert e.model_info("orders") is not None, "the engine trained"
        return e

    trained = engine()
    results = [("pipeline: FeatureHasher + StandardScaler + IsolationForest", median_time(pipeline, args.repeat))]
    results.append(("anomaly.Engine.score_many", median_time(lambda: trained.score_many("orders", probe), args.repeat)))
    observe_times = []
    for _ in range(args.repeat):
        e = engine()
        t0 = time.perf_counter()
        e.observe_many("orders", probe)
        observe_times.append(time.perf_counter() - t0)
    results.append(("anomaly.Engine.observe_many", statistics.median(observe_times)))
    results.append(
        ("anomaly.Engine.score per record", median_time(lambda: [trained.score("orders", r) for r in probe], args.repeat))
    )

    base = results[0][1]
    print(f"{'what':<62} {'records/s':>12} {'ratio':>7}")
    print("-" * 83)
    for name, seconds in results:
        print(f"{name:<62} {args.probe / seconds:>12,.0f} {base / seconds:>7.2f}")
    print("\nratio = the pipeline's time / this one's (> 1: faster than the pipeline).")


if __name__ == "__main__":
    main()
