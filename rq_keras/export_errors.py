"""The errors of a SavedModel export (`rq_keras.export`).

Apart, so that the serving graph, the checks and the export itself can raise
them; `rq_keras.export` re-exports both.
"""

__all__ = ["ExportCheckError", "ExportError"]


class ExportError(RuntimeError):
    """The export cannot start: an existing version, a bad version, no rows."""


class ExportCheckError(ExportError):
    """The written SavedModel failed a check; nothing was left in place."""
