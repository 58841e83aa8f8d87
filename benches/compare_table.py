#!/usr/bin/env python3
"""A large mixed CSV scored end to end: the `detect` binary next to pandas + one-hot encoding + scikit-learn.

The table is generated once (numpy and pandas, in chunks of 500,000 rows, so generating it takes bounded memory)
and kept in ``--dir`` for later runs: ``--rows`` rows (default 10,000,000) of 12 columns, the kinds a table of
orders holds: ``order_id`` (unique, rising), ``created`` (ISO date-time), ``region``, ``channel`` and ``currency``
(categories of 8, 4 and 5 values), ``amount``, ``quantity``, ``discount``, ``latency_ms``, ``score`` (numbers;
about 1 % of the float cells blank), ``express`` (true/false) and ``customer_age``. One row in a thousand is
planted: a large amount, at night, in the rarest region. Its labels (one 0 or 1 a line) sit next to the CSV.

Each side runs as a child process, so that the peak RSS of each is its own (``os.wait4``), on the same file in the
same run, alternately:

* the engine: the release ``detect`` binary, ``--input FILE --quiet --scores S --report R --threads T --top 0``
  (100 trees of 256 rows, seed 0). It learns from a uniform sample of ``--train-rows`` rows (its default: 200,000)
  and scores every row block by block, reading the file twice. Its wall time is the process's, and includes
  writing one score a line for every row; its fit and score seconds come from its report.
* the peer: this script again (``--peer-child``), which times ``pandas.read_csv`` (the C parser, or
  ``--pandas-engine pyarrow``), dropping ``order_id``, parsing ``created`` into hour and weekday columns,
  ``pd.get_dummies`` on the three categories, blanks filled with each column's median, the frame as one float32
  matrix, then ``IsolationForest(n_estimators=100, max_samples=256, random_state=0, n_jobs=T)`` ``fit`` and
  ``score_samples`` on every row. Its wall time is that pipeline's (starting Python and importing pandas and
  scikit-learn are not counted; the process's time is printed apart); its peak RSS is the whole process's.

The ROC-AUC of both against the planted labels comes from each side's per-row scores with the same function
(``sklearn.metrics.roc_auc_score``), outside the timed work. ``detect`` is not given the labels (it would keep
every row's label and score in memory); ``--engine-labels`` passes them and checks that its report agrees.

Every wall time is the median of ``--repeat`` runs, for each thread count of ``--threads``; the peak RSS is the
largest of the runs. rows/s = rows / wall time, and the ratio is the peer's wall time over the engine's (> 1: the
engine is faster). The machine's timings move from run to run: compare ratios from one run.

Usage, from anywhere in the repository (after ``cargo build --release --bin detect``; needs numpy, pandas and
scikit-learn, as the environment of ``scripts/test-python`` has them in ``.venv``):

    .venv/bin/python benches/compare_table.py
    .venv/bin/python benches/compare_table.py --rows 10000000 --threads 1,2 --repeat 3
    .venv/bin/python benches/compare_table.py --rows 200000 --peer-only --repeat 1

The default table takes about 1 GB on disk; the peer needs several GB of memory for it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve()

N_TREES = 100
MAX_SAMPLES = 256
SEED = 0

# The generator: bump VERSION when the table it writes changes, so an old file is not reused.
VERSION = 1
CHUNK = 500_000
ANOMALY_FRACTION = 0.001
BLANK_FRACTION = 0.01
REGIONS = ["eu-west", "eu-central", "uk", "us-east", "us-west", "apac", "latam", "africa-south"]
REGION_P = [0.24, 0.18, 0.10, 0.20, 0.12, 0.10, 0.05, 0.01]
RARE_REGION = REGIONS.index("africa-south")
CHANNELS = ["web", "app", "store", "phone"]
CHANNEL_P = [0.50, 0.30, 0.15, 0.05]
CURRENCIES = ["EUR", "GBP", "USD", "JPY", "BRL"]
# The usual currency of each region; 3 % of orders pay in another one.
REGION_CURRENCY = np.array([0, 0, 1, 2, 2, 3, 4, 2])
# Orders by hour of day: a daytime peak, few at night.
HOUR_W = np.array([1.0 + 4.0 * np.exp(-(((h - 14) / 4.5) ** 2)) for h in range(24)])
NIGHT = [1, 2, 3, 4]
CATEGORIES = ["region", "channel", "currency"]
COLUMNS = [
    "order_id", "created", "region", "channel", "currency", "amount",
    "quantity", "discount", "latency_ms", "score", "express", "customer_age",
]


# --- the table -----------------------------------------------------------------------------------------------------


def paths(directory: Path, rows: int, seed: int) -> tuple[Path, Path, Path]:
    stem = f"orders_{rows}_seed{seed}"
    return directory / f"{stem}.csv", directory / f"{stem}_labels.txt", directory / f"{stem}.json"


def chunk(start: int, n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows start .. start + n of the table, and their 0/1 labels."""
    planted = np.zeros(n, dtype=bool)
    planted[rng.choice(n, max(1, round(n * ANOMALY_FRACTION)), replace=False)] = True
    k = int(planted.sum())

    region = rng.choice(len(REGIONS), n, p=REGION_P)
    region[planted] = RARE_REGION
    currency = REGION_CURRENCY[region]
    other = rng.random(n) < 0.03
    currency[other] = rng.integers(0, len(CURRENCIES), int(other.sum()))

    hour = rng.choice(24, n, p=HOUR_W / HOUR_W.sum())
    hour[planted] = rng.choice(NIGHT, k)
    seconds = rng.integers(0, 366, n) * 86_400 + hour * 3_600 + rng.integers(0, 3_600, n)
    created = np.datetime_as_string(np.datetime64("2024-01-01T00:00:00") + seconds.astype("timedelta64[s]"), unit="s")

    amount = rng.lognormal(3.5, 0.7, n)
    amount[planted] *= rng.uniform(8.0, 20.0, k)
    discount = np.where(rng.random(n) < 0.7, 0.0, rng.uniform(0.0, 0.3, n))
    floats = {
        "amount": np.round(amount, 2),
        "discount": np.round(discount, 3),
        "latency_ms": np.round(rng.gamma(2.0, 40.0, n), 1),
        "score": np.round(rng.beta(5.0, 2.0, n), 4),
    }
    for name, values in floats.items():
        blank = rng.random(n) < BLANK_FRACTION
        if name == "amount":
            blank &= ~planted
        values[blank] = np.nan

    frame = pd.DataFrame(
        {
            "order_id": np.arange(start + 1, start + n + 1),
            "created": created,
            "region": pd.Categorical.from_codes(region, REGIONS),
            "channel": pd.Categorical.from_codes(rng.choice(len(CHANNELS), n, p=CHANNEL_P), CHANNELS),
            "currency": pd.Categorical.from_codes(currency, CURRENCIES),
            "amount": floats["amount"],
            "quantity": 1 + rng.poisson(1.2, n),
            "discount": floats["discount"],
            "latency_ms": floats["latency_ms"],
            "score": floats["score"],
            "express": pd.Categorical.from_codes((rng.random(n) < 0.2).astype(np.int8), ["false", "true"]),
            "customer_age": np.clip(rng.normal(42.0, 13.0, n), 18, 90).astype(np.int64),
        },
        columns=COLUMNS,
    )
    return frame, planted


def labels_bytes(planted: np.ndarray) -> bytes:
    out = np.empty(2 * len(planted), dtype=np.uint8)
    out[0::2] = ord("0") + planted
    out[1::2] = ord("\n")
    return out.tobytes()


def generate(rows: int, seed: int, csv: Path, labels: Path, meta: Path) -> None:
    """Writes the table and its labels chunk by chunk (to temporary names, renamed at the end)."""
    csv.parent.mkdir(parents=True, exist_ok=True)
    meta.unlink(missing_ok=True)
    tmp_csv, tmp_labels = csv.with_suffix(".csv.partial"), labels.with_suffix(".txt.partial")
    print(f"generating {rows:,} rows into {csv}", flush=True)
    start = time.perf_counter()
    n_planted = 0
    with open(tmp_csv, "w", newline="", encoding="utf-8") as out, open(tmp_labels, "wb") as lab:
        for k, first in enumerate(range(0, rows, CHUNK)):
            n = min(CHUNK, rows - first)
            frame, planted = chunk(first, n, np.random.default_rng([seed, k]))
            frame.to_csv(out, index=False, header=k == 0, lineterminator="\n", na_rep="")
            lab.write(labels_bytes(planted))
            n_planted += int(planted.sum())
            if sys.stdout.isatty():
                print(f"\r  {first + n:,} rows", end="", flush=True)
    if sys.stdout.isatty():
        print()
    os.replace(tmp_csv, csv)
    os.replace(tmp_labels, labels)
    meta.write_text(json.dumps({"version": VERSION, "rows": rows, "seed": seed, "chunk": CHUNK, "planted": n_planted}))
    print(f"  {time.perf_counter() - start:.1f} s, {csv.stat().st_size / 1e9:.2f} GB, {n_planted:,} planted rows")


def ensure_table(args: argparse.Namespace) -> tuple[Path, Path]:
    csv, labels, meta = paths(args.dir, args.rows, args.seed)
    want = {"version": VERSION, "rows": args.rows, "seed": args.seed, "chunk": CHUNK}
    try:
        have = json.loads(meta.read_text())
        ok = all(have.get(k) == v for k, v in want.items()) and csv.is_file() and labels.is_file()
    except (OSError, ValueError):
        ok = False
    if args.regenerate or not ok:
        generate(args.rows, args.seed, csv, labels, meta)
    return csv, labels


def read_labels(path: Path, rows: int) -> np.ndarray:
    """The 0/1 labels the generator writes (one digit and a newline a row)."""
    raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    if len(raw) != 2 * rows:
        sys.exit(f"error: {path} holds {len(raw) // 2:,} labels, expected {rows:,} (try --regenerate)")
    return raw[0::2] - ord("0")


def warm(path: Path) -> None:
    """Reads the file once, untimed, so that both sides find it in the page cache."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


# --- the peer (run in a child process) -----------------------------------------------------------------------------


def peer_child(args: argparse.Namespace) -> None:
    """pandas + one-hot + scikit-learn on the table; prints one JSON line of timings to stdout."""
    import sklearn
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import roc_auc_score

    threads = args.threads[0]
    if args.pandas_engine == "pyarrow":
        import pyarrow

        pyarrow.set_cpu_count(threads)
    csv, labels_path, _ = paths(args.dir, args.rows, args.seed)

    t0 = time.perf_counter()
    df = pd.read_csv(csv, engine=args.pandas_engine)
    t1 = time.perf_counter()
    df = df.drop(columns=["order_id"])
    created = pd.to_datetime(df.pop("created"), format="%Y-%m-%dT%H:%M:%S")
    df["hour"] = created.dt.hour
    df["weekday"] = created.dt.weekday
    del created
    df = pd.get_dummies(df, columns=CATEGORIES)
    df = df.fillna(df.median(numeric_only=True))
    x = df.to_numpy(dtype=np.float32)
    n_features = x.shape[1]
    del df
    t2 = time.perf_counter()
    forest = IsolationForest(n_estimators=N_TREES, max_samples=MAX_SAMPLES, random_state=SEED, n_jobs=threads)
    forest.fit(x)
    t3 = time.perf_counter()
    scores = forest.score_samples(x)
    t4 = time.perf_counter()

    labels = read_labels(labels_path, len(scores))
    result = {
        "rows": len(scores),
        "features": n_features,
        "read": t1 - t0,
        "encode": t2 - t1,
        "fit": t3 - t2,
        "score": t4 - t3,
        "pipeline": t4 - t0,
        # score_samples: lower is more anomalous.
        "auc": float(roc_auc_score(labels, -scores)),
        "versions": f"pandas {pd.__version__}, scikit-learn {sklearn.__version__}, numpy {np.__version__}",
    }
    print(json.dumps(result), flush=True)


# --- running and measuring children ---------------------------------------------------------------------------------


def run_child(cmd: list[str], out: Path, err: Path, what: str) -> tuple[float, float | None]:
    """Runs cmd with stdout and stderr to files; returns its wall seconds and peak RSS in MiB (None if unknown)."""
    with open(out, "wb") as fo, open(err, "wb") as fe:
        start = time.perf_counter()
        try:
            proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL)
        except OSError as e:
            sys.exit(f"error: could not start {what} ({cmd[0]}): {e}")
        if hasattr(os, "wait4"):
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
            # ru_maxrss: kibibytes on Linux, bytes on macOS.
            rss = usage.ru_maxrss / (1 << 20 if sys.platform == "darwin" else 1 << 10)
        else:
            proc.wait()
            wall, rss = time.perf_counter() - start, None
    if proc.returncode != 0:
        tail = err.read_text(errors="replace").strip().splitlines()[-5:]
        code = proc.returncode
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        hint = " (out of memory? try fewer --rows)" if code == -9 else ""
        detail = ("\n  " + "\n  ".join(tail)) if tail else ""
        sys.exit(f"error: {what} {how}{hint}{detail}")
    return wall, rss


def run_engine(exe: Path, csv: Path, labels: Path, work: Path, threads: int, args: argparse.Namespace) -> dict:
    report = work / f"detect_report_{threads}.json"
    cmd = [
        str(exe), "--input", str(csv), "--quiet",
        "--report", str(report), "--scores", str(work / f"detect_scores_{threads}.txt"),
        "--trees", str(N_TREES), "--sample-size", str(MAX_SAMPLES), "--seed", str(SEED),
        "--threads", str(threads), "--top", "0",
    ]
    if args.train_rows is not None:
        cmd += ["--train-rows", str(args.train_rows)]
    if args.engine_labels:
        cmd += ["--labels", str(labels)]
    report.unlink(missing_ok=True)
    wall, rss = run_child(cmd, work / "detect_stdout.txt", work / "detect_stderr.txt", f"detect --threads {threads}")
    return {"wall": wall, "rss": rss, "report": json.loads(report.read_text())}


def run_peer(work: Path, threads: int, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable, str(SCRIPT), "--peer-child", "--dir", str(args.dir), "--rows", str(args.rows),
        "--seed", str(args.seed), "--threads", str(threads), "--pandas-engine", args.pandas_engine,
    ]
    out = work / "peer_stdout.txt"
    wall, rss = run_child(cmd, out, work / "peer_stderr.txt", f"the pandas + scikit-learn child ({threads} threads)")
    lines = out.read_text().strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        sys.exit(f"error: the pandas + scikit-learn child printed no result (see {out})")
    result.update(process=wall, rss=rss)
    return result


def engine_auc(work: Path, threads: int, labels: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    path = work / f"detect_scores_{threads}.txt"
    scores = pd.read_csv(path, header=None, dtype=np.float64).iloc[:, 0].to_numpy()
    if len(scores) != len(labels):
        sys.exit(f"error: detect wrote {len(scores):,} scores for {len(labels):,} rows ({path})")
    # Higher is more anomalous.
    return float(roc_auc_score(labels, scores))


def column_roles(work: Path) -> str:
    """The lines of detect's output that say what it made of each column."""
    text = (work / "detect_stdout.txt").read_text(errors="replace").splitlines()
    keep = []
    for line in text:
        if line.startswith("Columns") or (keep and line.startswith("  ")):
            keep.append(line)
        elif keep:
            break
    return "\n".join(keep)


# --- main ----------------------------------------------------------------------------------------------------------


def parse_threads(text: str) -> list[int]:
    try:
        threads = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated thread counts, got {text!r}") from None
    if not threads or min(threads) < 1:
        raise argparse.ArgumentTypeError(f"expected thread counts of at least 1, got {text!r}")
    return threads


def fmt_rss(rss: float | None) -> str:
    return "n/a" if rss is None else f"{rss:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the table (default 10,000,000)")
    parser.add_argument(
        "--dir", type=Path, default=Path(tempfile.gettempdir()) / "table-bench",
        help="where the table, its labels and the runs' outputs are kept (default: table-bench in the temp dir)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated table (default 0)")
    parser.add_argument("--regenerate", action="store_true", help="write the table again even if it is there")
    parser.add_argument(
        "--threads", type=parse_threads, default=[1, 2], help="comma-separated thread counts (default 1,2)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side; the median is kept (default 3)")
    parser.add_argument(
        "--detect", type=Path, default=REPO / "target" / "release" / ("detect.exe" if os.name == "nt" else "detect"),
        help="the detect binary (default: target/release/detect in the repository)",
    )
    parser.add_argument("--train-rows", type=int, help="passed to detect (default: detect's own, 200,000)")
    parser.add_argument(
        "--pandas-engine", choices=["c", "pyarrow"], default="c",
        help="pandas.read_csv's parser (default c; pyarrow is limited to the run's thread count)",
    )
    parser.add_argument(
        "--engine-labels", action="store_true", help="pass the labels to detect too and check its ROC-AUC"
    )
    only = parser.add_mutually_exclusive_group()
    only.add_argument(
        "--peer-only", action="store_true", help="run pandas + scikit-learn only (no detect binary needed)"
    )
    only.add_argument("--engine-only", action="store_true", help="run detect only")
    parser.add_argument("--peer-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rows < 2:
        parser.error("--rows must be at least 2")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    args.dir = args.dir.resolve()

    if args.peer_child:
        peer_child(args)
        return

    exe = args.detect.resolve()
    if not args.peer_only and not exe.is_file():
        sys.exit(
            f"error: no detect binary at {exe}: build it with `cargo build --release --bin detect`, "
            "pass --detect PATH, or run the peer alone with --peer-only"
        )
    if args.pandas_engine == "pyarrow":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            sys.exit("error: --pandas-engine pyarrow needs pyarrow installed")

    csv, labels_path = ensure_table(args)
    labels = read_labels(labels_path, args.rows)
    work = args.dir / "runs"
    work.mkdir(exist_ok=True)
    warm(csv)
    sides = [s for s, skip in (("engine", args.peer_only), ("peer", args.engine_only)) if not skip]
    print(
        f"\n{args.rows:,} rows x {len(COLUMNS)} columns, {csv.stat().st_size / 1e9:.2f} GB, "
        f"{int(labels.sum()):,} planted; {os.cpu_count()} CPUs, {platform.machine()}, "
        f"Python {platform.python_version()}"
    )
    if not args.peer_only:
        print(f"engine: {exe}, {N_TREES} trees of {MAX_SAMPLES} rows, seed {SEED}")
    print(f"median of {args.repeat} run(s) per thread count\n", flush=True)

    results = []
    for threads in args.threads:
        engine, peer = [], []
        for r in range(args.repeat):
            if "engine" in sides:
                print(f"[{threads} thread(s), run {r + 1}/{args.repeat}] detect", flush=True)
                engine.append(run_engine(exe, csv, labels_path, work, threads, args))
            if "peer" in sides:
                print(f"[{threads} thread(s), run {r + 1}/{args.repeat}] pandas + scikit-learn", flush=True)
                peer.append(run_peer(work, threads, args))
        row = {"threads": threads}
        if engine:
            report = engine[-1]["report"]
            row["engine"] = {
                "wall": statistics.median(e["wall"] for e in engine),
                "rss": max((e["rss"] for e in engine if e["rss"] is not None), default=None),
                "fit": statistics.median(e["report"]["fit_seconds"] for e in engine),
                "score": statistics.median(e["report"]["score_seconds"] for e in engine),
                "auc": engine_auc(work, threads, labels),
                "report_auc": report.get("roc_auc"),
                "features": report["n_features"],
                "flagged": report["n_anomalies"],
            }
        if peer:
            row["peer"] = {k: statistics.median(p[k] for p in peer)
                           for k in ("read", "encode", "fit", "score", "pipeline", "process")}
            row["peer"].update(
                wall=row["peer"]["pipeline"],
                rss=max((p["rss"] for p in peer if p["rss"] is not None), default=None),
                auc=peer[-1]["auc"], features=peer[-1]["features"], versions=peer[-1]["versions"],
            )
        results.append(row)

    if "engine" in sides:
        print("\ndetect's columns (first run):\n" + column_roles(work))
    if "peer" in sides:
        print(f"\npeer: {results[0]['peer']['versions']}, read_csv engine {args.pandas_engine!r}")
    header = (
        f"{'threads':>7}  {'what':<24} {'wall s':>9} {'rows/s':>11} {'peak RSS MiB':>13} {'ROC-AUC':>8} {'ratio':>6}"
    )
    print("\n" + header)
    print("-" * len(header))
    for row in results:
        e, p = row.get("engine"), row.get("peer")
        ratio = f"{p['wall'] / e['wall']:>6.2f}" if e and p else ""
        if e:
            print(f"{row['threads']:>7}  {'detect':<24} {e['wall']:>9.2f} {args.rows / e['wall']:>11,.0f} "
                  f"{fmt_rss(e['rss']):>13} {e['auc']:>8.4f} {ratio}")
        if p:
            print(f"{row['threads']:>7}  {'pandas + scikit-learn':<24} {p['wall']:>9.2f} "
                  f"{args.rows / p['wall']:>11,.0f} "
                  f"{fmt_rss(p['rss']):>13} {p['auc']:>8.4f} {'1.00' if e else '':>6}")
    print("\nwhere the time goes (medians, seconds):")
    for row in results:
        e, p = row.get("engine"), row.get("peer")
        if e:
            rest = e["wall"] - e["fit"] - e["score"]
            print(f"  {row['threads']} thread(s), detect: fit {e['fit']:.2f} (vectorising the sample, growing the "
                  f"trees), score {e['score']:.2f} (vectorising and scoring every row), the rest {rest:.2f} (reading "
                  f"and parsing the file, writing the scores); {e['features']} features, {e['flagged']:,} flagged")
        if p:
            print(f"  {row['threads']} thread(s), pandas + scikit-learn: read_csv {p['read']:.2f}, "
                  f"encode {p['encode']:.2f}, "
                  f"fit {p['fit']:.2f}, score {p['score']:.2f}; {p['features']} features; "
                  f"the process {p['process']:.2f} in all (starting Python, importing, the ROC-AUC: not counted)")
    print(
        "\nrows/s = rows / wall time; ratio = the peer's wall time / detect's (> 1: detect is faster). detect's wall "
        "time is its process's,\nwriting a score a line included; the peer's is read_csv to score_samples. ROC-AUC "
        "from each side's scores against the planted rows."
    )
    for row in results:
        e = row.get("engine")
        if e and e["report_auc"] is not None and abs(e["report_auc"] - e["auc"]) > 1e-9:
            print(f"warning: {row['threads']} thread(s): detect reports ROC-AUC {e['report_auc']}, "
                  f"roc_auc_score gives {e['auc']}")


if __name__ == "__main__":
    main()
