"""The exception hierarchy of cfprune.

Every error raised on bad input is a :class:`CfpruneError`; its message names the file, the line
or the array at fault and what was expected. The subclasses also derive from the built-in
exception a Python user would expect (``ValueError``, ``ImportError``), so ``except ValueError``
keeps working.
"""


class CfpruneError(Exception):
    """Base class of every error cfprune raises on purpose."""


class DataError(CfpruneError, ValueError):
    """A ratings file, archive or interaction matrix is missing, malformed or inconsistent."""


class ShapeError(CfpruneError, ValueError):
    """An array has the wrong number of dimensions, shape, dtype or non-finite values."""


class SpecError(CfpruneError, ValueError):
    """A compression spec string names an unknown method or parameter, or a value out of range."""


class ModelFileError(CfpruneError, ValueError):
    """A saved model file is corrupt, tampered with, or written by a newer format version."""


class TrainingError(CfpruneError, RuntimeError):
    """Training failed to produce finite factors (e.g. a learning rate that diverges)."""


class MissingDependencyError(CfpruneError, ImportError):
    """An optional dependency is not installed; the message says how to install it."""


class NoFaissForm(CfpruneError, ValueError):
    """A table's storage has no faiss index holding the same codes; the message says why."""


class FileWriteError(CfpruneError, OSError):
    """Writing a file failed (disk full, file too large, no permission); ``errno`` and
    ``filename`` are those of the underlying OSError, and the earlier file is unchanged."""

    def __str__(self):
        # the one-line message, not OSError's "[Errno n] strerror: filename"
        return str(self.args[0]) if self.args else ""
