"""Writes the Parquet fixtures of the table reader's tests with pandas and pyarrow, as users' files are written.

    python make_fixtures.py   # needs pandas and pyarrow
"""

import math

import pandas as pd

df = pd.DataFrame(
    {
        "id": [1, 2, 3],
        "when": pd.to_datetime(["2014-07-01 00:00:00", "2014-07-01 00:30:00", None]),
        "amount": [10.5, math.nan, 7.0],
        "region": ["north", None, "south"],
        "express": [True, False, True],
        "day": pd.to_datetime(["2014-07-01", "2014-07-02", "2014-07-03"]).date,
    }
)
df.to_parquet("sales.parquet", index=False)  # pandas' default: snappy
df.to_parquet("sales.zstd.parquet", index=False, compression="zstd")

# Nanosecond timestamps, as pandas 2 and Spark write them: the row reader sees plain integers.
when = pd.to_datetime(["2014-07-01 00:00:00.000000001", "2014-07-01 13:30:00.000000000"])
ns = pd.DataFrame({"when": when.astype("datetime64[ns]")})
ns.to_parquet("nanos.parquet", index=False, coerce_timestamps=None, version="2.6")
