"""The errors of the serving package: exporting a SavedModel and scoring files.

Every module of `rq_keras.serving` that can fail raises one of these, so a
caller catches them by what failed, whichever module found it.
"""

__all__ = ["ExportCheckError", "ExportError", "PredictError"]


class ExportError(RuntimeError):
    """The export cannot start: an existing version, a bad version, no rows."""


class ExportCheckError(ExportError):
    """The written SavedModel failed a check; nothing was left in place."""


class PredictError(ValueError):
    """Scoring cannot start or go on: a bad argument, model, output or id column."""
