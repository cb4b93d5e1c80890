"""The models `predict_files` scores with: a trained run or an export.

`load_run_scorer` loads a finished `train.py` run (`model.keras`, called
with `training=False`), `load_saved_model_scorer` an `export.py` version
directory (its `serving_default` signature); both give a `Scorer`, which
maps numpy feature rows to the outputs the SavedModel serves
(`rq_keras.serving.signatures.OUTPUTS`). TensorFlow is imported when a model is loaded,
not when this module loads.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from rq_keras.config.choices import PREDICTIONS
from rq_keras.config.keras_version import import_tensorflow
from rq_keras.evaluation.output_columns import output_levels
from rq_keras.serving.errors import PredictError

__all__ = ["Scorer", "load_run_scorer", "load_saved_model_scorer"]


class Scorer:
    """A loaded model: `(spec, levels)` and a call from numpy rows to outputs."""

    def __init__(
        self,
        spec,
        levels: Mapping[str, list[float]] | None,
        call: Callable[[dict], Mapping[str, Any]],
        source: str,
        holds: Any = None,
    ):
        self.spec = spec
        self.levels = dict(levels or {})
        self.source = source
        self._call = call
        self._holds = holds  # what `call` needs alive (a loaded SavedModel)

    def __call__(self, rows: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Feature rows (the readers' form) -> outputs, in `OUTPUTS` order.

        Floats as float32 (`prediction` and the other per-row values
        `(batch,)`), `codes` int32, as the SavedModel serves them.
        """
        from rq_keras.serving.signatures import OUTPUTS, feature_tensors

        out = self._call(feature_tensors(self.spec, rows))
        result = {}
        for key in OUTPUTS:
            if key not in out:
                continue
            value = np.asarray(out[key])
            if key == "prediction" or key in PREDICTIONS:
                value = value.reshape(-1)
            result[key] = value.astype(np.int32 if key == "codes" else np.float32, copy=False)
        if "prediction" not in result:
            raise PredictError(f"{self.source}: the model's outputs have no `prediction`")
        return result

    def empty_rows(self) -> dict[str, np.ndarray]:
        """Zero rows of every feature: scoring them gives the output columns."""
        out = {}
        for f in self.spec.features:
            dtype = object if f.dtype == "string" else np.dtype(f.tf_dtype_name)
            out[f.name] = np.zeros((0, *f.shape), dtype=dtype)
        return out


def load_run_scorer(model_dir: str | os.PathLike) -> Scorer:
    """A `Scorer` calling a finished run's `model.keras` with `training=False`."""
    tf = import_tensorflow()

    from rq_keras.serving.signatures import OUTPUTS
    from rq_keras.training.run_dir import load_trained

    run = pathlib.Path(model_dir)
    try:
        model, spec = load_trained(run)
    except FileNotFoundError as err:
        raise PredictError(str(err)) from None

    @tf.function(reduce_retracing=True, autograph=False)
    def step(features):
        out = model(features, training=False)
        return {k: out[k] for k in OUTPUTS if k in out}

    def call(features):
        return {k: v.numpy() for k, v in step(features).items()}

    return Scorer(spec, output_levels(model), call, str(run / "model.keras"))


def load_saved_model_scorer(export_dir: str | os.PathLike) -> Scorer:
    """A `Scorer` calling the `serving_default` signature of an export's `BASE/N`."""
    from rq_keras.features.spec import FeatureSpec
    from rq_keras.serving.export import OUTPUTS_FILE, SPEC_FILE, latest_version

    path = pathlib.Path(export_dir)
    if not (path / "saved_model.pb").is_file():
        latest = latest_version(path)
        hint = f" (it holds versions: the latest is {path / str(latest)})" if latest else ""
        raise PredictError(
            f"{path} is not a SavedModel (no saved_model.pb): --saved-model must be an "
            f"export.py version directory BASE/N{hint}"
        )
    spec_path = path / "assets.extra" / SPEC_FILE
    if not spec_path.is_file():
        raise PredictError(
            f"{spec_path} is missing: --saved-model must be a SavedModel written by export.py"
        )
    spec = FeatureSpec.load(spec_path)
    levels = None
    levels_path = path / "assets.extra" / OUTPUTS_FILE
    if levels_path.is_file():
        levels = _read_levels(levels_path)

    tf = import_tensorflow()

    try:
        loaded = tf.saved_model.load(str(path))
        serve = loaded.signatures["serving_default"]
    except Exception as err:  # noqa: BLE001  TF raises many kinds for a damaged SavedModel
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise PredictError(
            f"{path} cannot be loaded as a SavedModel ({type(err).__name__}: {first})"
        ) from None

    def call(features):
        out = serve(**features)
        return {k: v.numpy() for k, v in out.items()}

    return Scorer(spec, levels, call, str(path), holds=loaded)


def _read_levels(path: pathlib.Path) -> dict[str, list[float]]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PredictError(f"{path} cannot be read: {err}") from None
    ok = isinstance(doc, dict) and all(
        isinstance(doc.get(k, []), list)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in doc.get(k, []))
        for k in ("quantiles", "thresholds")
    )
    if not ok:
        raise PredictError(f"{path} does not hold lists of `quantiles` and `thresholds`")
    return {k: [float(v) for v in doc[k]] for k in ("quantiles", "thresholds") if k in doc}
