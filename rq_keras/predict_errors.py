"""The error of scoring files (`rq_keras.predict`).

Apart, so that the scorers, the output tables and `predict_files` can raise
it; `rq_keras.predict` re-exports it.
"""

__all__ = ["PredictError"]


class PredictError(ValueError):
    """Scoring cannot start or go on: a bad argument, model, output or id column."""
