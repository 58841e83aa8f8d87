#!/usr/bin/env python3
"""The record engine from Python next to the pipeline it replaces, on the same JSON-like records, in one process.

The pipeline is the original SQL watcher's: records flattened to dotted keys, scikit-learn's ``FeatureHasher``
(dict input, 64 columns: numbers as values, strings as ``key=value`` one-hot), ``StandardScaler`` and
``IsolationForest`` (100 trees, 256 samples, ``n_jobs=1``, as the application ran it), fitted on the training
records; it is timed transforming and scoring the probe records (``transform`` + ``score_samples``), and once more
with ``score_samples`` on two threads (``joblib.parallel_config(backend="threading", n_jobs=2)``; the engine uses
the machine's cores).

The engine (``anomaly.Engine``, 100 trees, retraining and drift off) learns the training records and trains once;
it is then timed on the probe records, given the way each call takes them:

* as a list of dicts: ``score_many`` (one call that scores the batch without learning from it, a dict per
  outcome), ``score_frame`` on the dicts (the same, answered as arrays), ``observe_many`` (one call that scores and
  learns each record: history, baseline) and ``score`` called once per record, against the pipeline on the same
  dicts;
* as a DataFrame (the same records through ``pandas.json_normalize``, built before timing): ``score_frame``, the
  columnar call that scores without learning and answers with arrays; the pipeline on the frame's rows
  (``DataFrame.to_dict("records")``, then as above) is shown too.

Records have 10 fields of every kind the engine reads (numbers, a numeric string, categories, a boolean, a
date-time string, a nested object). Every time is the median of ``--repeat`` runs, the calls alternating within
each run, and every ratio is over the pipeline on dicts, its fastest input (> 1: faster than the pipeline). Scores
of ``score_frame`` are checked equal, bit for bit, to ``score_many``'s.

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

import joblib
import numpy as np
import pandas as pd
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=20_000, help="training records (default 20,000)")
    parser.add_argument("--probe", type=int, default=100_000, help="records timed (default 100,000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each timing; the median is kept (default 5)")
    args = parser.parse_args()

    train, probe = records(args.train, 1), records(args.probe, 2)
    print(
        f"scikit-learn {sklearn.__version__}, anomaly {anomaly.__version__}, numpy {np.__version__}, "
        f"pandas {pd.__version__}, "
        f"Python {platform.python_version()}; {args.train:,} training records, {args.probe:,} timed, "
        f"median of {args.repeat} runs\n"
    )

    hasher = FeatureHasher(n_features=64, input_type="dict")
    scaler = StandardScaler()
    forest = IsolationForest(n_estimators=100, max_samples=256, random_state=0, n_jobs=1)
    forest.fit(scaler.fit_transform(hasher.transform([flatten(r) for r in train]).toarray()))
    frame = pd.json_normalize(probe)

    def pipeline(rows: list[dict]) -> None:
        x = scaler.transform(hasher.transform([flatten(r) for r in rows]).toarray())
        forest.score_samples(x)

    def pipeline_threaded(rows: list[dict]) -> None:
        with joblib.parallel_config(backend="threading", n_jobs=2):
            pipeline(rows)

    def engine() -> anomaly.Engine:
        e = anomaly.Engine(
            min_training_records=args.train, retrain_every=10**9, drift=False, n_estimators=100, seed=0
        )
        e.observe_many("orders", train)
        assert e.model_info("orders") is not None, "the engine trained"
        return e

    trained = engine()
    many = trained.score_many("orders", probe)
    columnar = trained.score_frame("orders", frame)
    assert np.array_equal(columnar.scores, [o["score"] for o in many]), "score_frame and score_many differ"
    assert np.array_equal(trained.score_frame("orders", probe).scores, columnar.scores), "dicts and frame differ"

    # Every call timed alternately with the others, so a slow spell of the shared machine hits them all.
    calls = [
        ("records as dicts:", None),
        ("pipeline: FeatureHasher + StandardScaler + IsolationForest", lambda: pipeline(probe)),
        ("pipeline, score_samples on 2 threads (joblib threading)", lambda: pipeline_threaded(probe)),
        ("anomaly.Engine.score_many", lambda: trained.score_many("orders", probe)),
        ("anomaly.Engine.score per record", lambda: [trained.score("orders", r) for r in probe]),
        ("anomaly.Engine.score_frame on the dicts (arrays out)", lambda: trained.score_frame("orders", probe)),
        ("records as a DataFrame (pandas.json_normalize of the dicts):", None),
        ("pipeline on DataFrame.to_dict('records')", lambda: pipeline(frame.to_dict("records"))),
        ("anomaly.Engine.score_frame", lambda: trained.score_frame("orders", frame)),
    ]
    times: dict[str, list[float]] = {name: [] for name, fn in calls if fn is not None}
    for _ in range(args.repeat):
        for name, fn in calls:
            if fn is not None:
                times[name].append(timed(fn))
    base = statistics.median(times[calls[1][0]])
    print(f"{'what':<62} {'records/s':>12} {'ratio':>7}")
    print("-" * 83)
    for name, fn in calls:
        if fn is None:
            print(name)
            continue
        seconds = statistics.median(times[name])
        print(f"  {name:<60} {args.probe / seconds:>12,.0f} {base / seconds:>7.2f}")
    # observe_many learns: each run needs a freshly trained engine, built outside the timing.
    observe_runs = []
    for _ in range(args.repeat):
        e = engine()
        observe_runs.append(timed(lambda: e.observe_many("orders", probe)))
    seconds = statistics.median(observe_runs)
    print(f"  {'anomaly.Engine.observe_many (learns each record)':<60} {args.probe / seconds:>12,.0f} {base / seconds:>7.2f}")
    print(
        "\nratio = the time of the pipeline on dicts (its fastest input) / this one's (> 1: faster than the pipeline)."
    )


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
