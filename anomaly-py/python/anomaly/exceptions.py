"""The exceptions of the ``anomaly`` package.

Every error of the Rust core maps to one class here; the values the core reports become attributes (for example
``DimensionMismatchError.expected`` / ``.got``, ``NonFiniteError.row`` / ``.column`` / ``.value``). Bad input and bad
parameters are ``ValueError`` subclasses, so code written against scikit-learn keeps catching them.
``NotFittedError`` subclasses scikit-learn's ``NotFittedError`` when scikit-learn is installed (itself a
``ValueError`` and an ``AttributeError``), and both of those otherwise.
"""

from __future__ import annotations

try:  # pragma: no cover - depends on the environment
    from sklearn.exceptions import NotFittedError as _BaseNotFitted
except ImportError:  # pragma: no cover

    class _BaseNotFitted(ValueError, AttributeError):  # type: ignore[no-redef]
        """Stands in for scikit-learn's NotFittedError when scikit-learn is not installed."""


__all__ = [
    "AnomalyError",
    "InvalidParameterError",
    "InvalidInputError",
    "DimensionMismatchError",
    "NotEnoughSamplesError",
    "NonFiniteError",
    "EmptyInputError",
    "InvalidRecordError",
    "TableError",
    "NotFittedError",
    "CorruptModelError",
    "PersistenceError",
]


class AnomalyError(Exception):
    """Base class of every error raised by ``anomaly``."""


class InvalidParameterError(AnomalyError, ValueError):
    """A parameter outside its domain (attributes: ``parameter``, ``reason``)."""


class InvalidInputError(AnomalyError, ValueError):
    """Input that cannot be used: wrong shape, wrong dtype, NaN, empty, too few rows."""


class DimensionMismatchError(InvalidInputError):
    """Another number of features than the model was fitted on (attributes: ``expected``, ``got``)."""


class NotEnoughSamplesError(InvalidInputError):
    """Too few rows to fit (attributes: ``needed``, ``got``)."""


class NonFiniteError(InvalidInputError):
    """A NaN or infinite value (attributes: ``row``, ``column``, ``value``)."""


class EmptyInputError(InvalidInputError):
    """No rows or no columns (attribute: ``what``)."""


class InvalidRecordError(InvalidInputError):
    """A record the engine cannot read: not a mapping, nested too deeply, too many fields (attribute: ``reason``)."""


class TableError(InvalidInputError):
    """A table file that cannot be read: missing, another format, a malformed row (attributes: ``file``, ``reason``)."""


class NotFittedError(AnomalyError, _BaseNotFitted):
    """A method that needs a fitted model was called before ``fit``."""


class CorruptModelError(AnomalyError, ValueError):
    """Snapshot (pickle) bytes that cannot be restored: corrupt, another format or an unknown version."""


class PersistenceError(AnomalyError, RuntimeError):
    """The engine's persistence layer failed (attribute: ``reason``)."""
