"""How many threads a call may use, read per call as scikit-learn reads ``n_jobs``.

* An explicit ``n_jobs`` wins (joblib's meaning: k threads, -1 every core, -k all but k - 1).
* ``n_jobs=None`` takes the active joblib configuration's ``n_jobs`` (inside ``joblib.parallel_backend`` or
  ``joblib.parallel_config``), and otherwise the core's shared pool of one thread per core. That pool is shared by
  every caller, so concurrent calls from many Python threads share the cores rather than multiply the threads
  (scikit-learn would use one thread here).
* ``threadpoolctl.threadpool_limits(k)`` caps every call at k threads while it is active: the package registers a
  threadpoolctl controller (``user_api="anomaly"``) when threadpoolctl is installed, so
  ``threadpool_limits(limits=1)`` and ``threadpool_limits(limits=1, user_api="anomaly")`` both apply.
"""

from __future__ import annotations

import os
from typing import Any

from . import _native


def effective_n_jobs(n_jobs: Any) -> Any:
    """``n_jobs``, or the active joblib configuration's when it is ``None`` (``None`` when there is none)."""
    if n_jobs is not None:
        return n_jobs
    try:
        import joblib
        from joblib.parallel import get_active_backend
    except ImportError:
        return None
    if not hasattr(joblib, "parallel_config"):
        # Before joblib 1.3, the answer outside any configuration is 1, not "unset".
        return None
    _, jobs = get_active_backend()
    return jobs


def _register_threadpoolctl() -> None:
    try:
        from threadpoolctl import LibController, register
    except ImportError:
        return

    ours = os.path.realpath(_native.__file__)

    class AnomalyController(LibController):
        """threadpoolctl's view of the package's threads (its extension module is the library it finds; another
        package's ``_native`` module matches the prefix too, and is left alone)."""

        user_api = "anomaly"
        internal_api = "anomaly"
        filename_prefixes = ("_native.",)

        def set_additional_attributes(self) -> None:
            self.ours = os.path.realpath(self.filepath) == ours

        def get_num_threads(self) -> Any:
            return _native._thread_limit() if getattr(self, "ours", False) else None

        def set_num_threads(self, num_threads: int) -> None:
            if getattr(self, "ours", False):
                _native._set_thread_limit(num_threads)

        def get_version(self) -> str:
            return _native.__version__

    register(AnomalyController)


_register_threadpoolctl()
