"""A trained model in production: SavedModel export, clients, batch scoring.

* `export`: `export_run` / `export_model`: a checked, versioned SavedModel for
  TF Serving (atomic);
* `signatures`: the serving `tf.Module`, its signatures and their inputs;
* `export_checks`: the check of an export in a fresh process, warm-up
  requests, the scan for Python ops;
* `client`: TF Serving REST request bodies for an export's signatures;
* `predict`: `predict_files`: score CSV, Parquet or TFRecord files with a run
  or an export; `scorers` loads either as a scorer, `output_tables` writes
  the scored table;
* `cpp_check`: builds (per TensorFlow install) and drives the C++ serving
  check in `cpp/`, a program on TensorFlow's C++ SavedModel loader;
* `errors`: `ExportError`, `ExportCheckError`, `PredictError`.
"""


def __getattr__(name):
    """A name this package had in rq_keras 0.2 (it warns), or AttributeError."""
    from rq_keras._deprecated import module_getattr

    return module_getattr(__name__, stacklevel=3)(name)
