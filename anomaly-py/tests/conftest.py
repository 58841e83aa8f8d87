"""Shared fixtures: seeded data, the public data sets, the Rust `snapshot` example binary."""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def shared_data() -> Path | None:
    """The shared data folder beside the checkout (``../shared/data``), or ``ANOMALY_SHARED_DATA``."""
    env = os.environ.get("ANOMALY_SHARED_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """500 rows of N(0, I) in 4 dimensions with 10 planted outliers (rows 0-9, scaled by 6); returns X and labels."""
    rng = np.random.default_rng(42)
    x = rng.standard_normal((500, 4))
    x[:10] *= 6.0
    y = np.zeros(500, dtype=int)
    y[:10] = 1
    return x, y


@pytest.fixture(scope="session")
def snapshot_bin() -> Path:
    """The Rust `snapshot` example (built by scripts/test-python; built here with cargo when missing)."""
    env = os.environ.get("ANOMALY_SNAPSHOT_BIN")
    if env:
        path = Path(env)
        if not path.is_file():
            pytest.fail(f"ANOMALY_SNAPSHOT_BIN={env} does not exist")
        return path
    cargo = shutil.which("cargo")
    if cargo is None:
        warnings.warn("SKIPPED cross-language tests: no cargo and no ANOMALY_SNAPSHOT_BIN")
        pytest.skip("SKIPPED: cross-language snapshot tests need cargo or ANOMALY_SNAPSHOT_BIN")
    subprocess.run(
        [cargo, "build", "--release", "-p", "anomaly-py", "--example", "snapshot"], cwd=REPO, check=True
    )
    meta = subprocess.run(
        [cargo, "metadata", "--format-version", "1", "--no-deps"], cwd=REPO, check=True, capture_output=True, text=True
    )
    import json

    return Path(json.loads(meta.stdout)["target_directory"]) / "release" / "examples" / "snapshot"
