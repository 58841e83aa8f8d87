#!/usr/bin/env python3
"""One isolation forest per group inside Spark: ``anomaly.spark`` next to scikit-learn in ``applyInPandas``.

Spark runs in local mode (``local[2]`` by default) on a table it generates itself: ``--rows`` rows (default
10,000,000) of ``--features`` numeric features (default 10) in ``--groups`` groups (default 1,000), each group its
own distribution, one row in a thousand planted far off. The table is generated in Spark and cached, so neither
side pays for it. In the same run, each side then does the same two jobs:

* fit: one model per group, 100 trees of 256 rows, seed 0 (``anomaly.spark.fit_groups``; the usual way: a
  ``groupBy().applyInPandas`` that fits ``sklearn.ensemble.IsolationForest`` and returns the pickled estimator);
* score: every row with its group's model (``anomaly.spark.score_groups``, a co-grouping of rows and models, which
  adds ``score``, ``is_anomaly`` and ``reason``; the usual way: the pickled models collected to the driver and broadcast, then ``groupBy().applyInPandas`` that
  unpickles its group's model and calls ``score_samples``).

Each job is timed until Spark has written every result to a no-op sink (``df.write.format("noop")``), as the
median of ``--repeat`` runs. Spark's own overhead is measured by a third job that moves the same rows through the
same ``applyInPandas`` doing nothing (returning each group's rows as they are); its share of each side's time is
printed.

Usage (pyspark 4.0 needs pandas 2 and Java; ``scripts/test-python`` builds ``.venv-spark`` with both, and the
package):

    .venv-spark/bin/python benches/compare_spark.py
    .venv-spark/bin/python benches/compare_spark.py --rows 1000000 --groups 100 --repeat 1
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import statistics
import sys
import time

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--groups", type=int, default=1_000)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each job; the median is kept (default 3)")
    args = parser.parse_args()

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql import types as T
    import sklearn
    from sklearn.ensemble import IsolationForest as SkForest

    import anomaly
    import anomaly.spark

    spark = (
        SparkSession.builder.master(args.master)
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "6g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    features = [f"x{j}" for j in range(args.features)]

    # Group g: feature j ~ N(g mod 7 + j, 1 + g mod 3); one row in a thousand shifted by 12 standard deviations.
    base = spark.range(args.rows).withColumn("g", (F.col("id") % args.groups).cast("int"))
    # The k-th row of each group (k = id // groups) is planted when k % 1000 == 7: every group has its share.
    planted = (F.floor(F.col("id") / args.groups) % 1000) == 7
    cols = [
        (
            (F.col("g") % 7 + j)
            + (1 + F.col("g") % 3) * F.randn(seed=j)
            + F.when(planted, 12 * (1 + F.col("g") % 3)).otherwise(0)
        ).alias(f"x{j}")
        for j in range(args.features)
    ]
    df = base.select("id", "g", *cols).repartition(8, "g").cache()
    df.count()

    print(
        f"anomaly {anomaly.__version__}, scikit-learn {sklearn.__version__}, pyspark {spark.version}, "
        f"pandas {pd.__version__}, Python {platform.python_version()}; {args.master}, {args.rows:,} rows x "
        f"{args.features} features in {args.groups:,} groups, median of {args.repeat} runs\n"
    )

    def warm_up(pdf: pd.DataFrame) -> pd.DataFrame:
        return pdf

    # Python workers started and Arrow loaded before anything is timed.
    df.groupBy("g").applyInPandas(warm_up, df.schema).write.format("noop").mode("overwrite").save()

    def timed(make) -> float:
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            make().write.format("noop").mode("overwrite").save()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    params = {"n_estimators": 100, "max_samples": 256, "random_state": 0}

    # scikit-learn, the usual way.
    sk_schema = T.StructType([T.StructField("g", T.IntegerType()), T.StructField("model", T.BinaryType())])

    def sk_fit(pdf: pd.DataFrame) -> pd.DataFrame:
        est = SkForest(**params).fit(pdf[features].to_numpy())
        return pd.DataFrame({"g": [int(pdf["g"].iloc[0])], "model": [pickle.dumps(est)]})

    def sk_models():
        return df.groupBy("g").applyInPandas(sk_fit, sk_schema)

    scored_schema = T.StructType(df.schema.fields + [T.StructField("score", T.DoubleType())])

    # Our fit, persisted once for the scoring runs (so scoring does not fit again).
    ours_models = lambda: anomaly.spark.fit_groups(df, "g", features, **params)  # noqa: E731
    fit_ours = timed(ours_models)
    fit_sk = timed(sk_models)
    models_ours = ours_models().cache()
    models_ours.count()
    models_sk = {row["g"]: row["model"] for row in sk_models().collect()}
    blob = spark.sparkContext.broadcast(models_sk)

    def sk_score(pdf: pd.DataFrame) -> pd.DataFrame:
        est = pickle.loads(blob.value[int(pdf["g"].iloc[0])])
        out = pdf.copy()
        out["score"] = -est.score_samples(pdf[features].to_numpy())
        return out

    def noop(pdf: pd.DataFrame) -> pd.DataFrame:
        out = pdf.copy()
        out["score"] = 0.0
        return out

    score_ours = timed(lambda: anomaly.spark.score_groups(df, models_ours, "g", features))
    score_sk = timed(lambda: df.groupBy("g").applyInPandas(sk_score, scored_schema))
    overhead = timed(lambda: df.groupBy("g").applyInPandas(noop, scored_schema))

    # The same rows scored both ways agree on what is anomalous (ROC-AUC against the planted rows).
    from sklearn.metrics import roc_auc_score

    sample = df.filter(F.col("g") < max(1, args.groups // 20))
    ours = anomaly.spark.score_groups(sample, models_ours, "g", features).select("id", "score").toPandas()
    theirs = sample.groupBy("g").applyInPandas(sk_score, scored_schema).select("id", "score").toPandas()
    auc_ours = roc_auc_score((ours["id"] // args.groups) % 1000 == 7, ours["score"])
    auc_sk = roc_auc_score((theirs["id"] // args.groups) % 1000 == 7, theirs["score"])

    header = f"{'job':<8} {'scikit-learn s':>15} {'anomaly s':>10} {'ratio':>7}"
    print(f"{header}   Spark's overhead (the no-op job: {overhead:.1f} s)")
    print("-" * 96)
    for job, sk, ours_t in [("fit", fit_sk, fit_ours), ("score", score_sk, score_ours)]:
        share = f"{min(1.0, overhead / ours_t):.0%} of anomaly's, {min(1.0, overhead / sk):.0%} of scikit-learn's"
        print(f"{job:<8} {sk:>15.1f} {ours_t:>10.1f} {sk / ours_t:>7.2f}   {share if job == 'score' else ''}")
    print(f"\nROC-AUC on the planted rows of {args.groups // 20 or 1} groups: anomaly {auc_ours:.4f}, "
          f"scikit-learn {auc_sk:.4f}")
    print("ratio = scikit-learn's time / anomaly's (> 1: anomaly is faster). The no-op job moves the same rows through")
    print("the same applyInPandas and returns them unscored: what any per-group job pays Spark and Arrow.")
    spark.stop()


if __name__ == "__main__":
    main()
