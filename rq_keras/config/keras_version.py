"""Which Keras `tf.keras` is in this process, and rq_keras's rule for it.

rq_keras's head, layers, losses and training are written for Keras 2
(`tf_keras`), on TensorFlow Recommenders, which needs `tf.keras` to be Keras 2.
TensorFlow routes `tf.keras` to Keras 2 only when `TF_USE_LEGACY_KERAS` is
`1` / `true` / `True` when `tf.keras` is first used; since TensorFlow 2.16 the
default is Keras 3. So:

* `import rq_keras` changes nothing: no environment variable, no import of
  TensorFlow or Keras.
* `prefer_keras2()`, run when a part of rq_keras that loads TensorFlow is
  first imported (the data pipeline, serving, the command lines): while
  `tf.keras` is undecided (TensorFlow not loaded, or loaded without `tf.keras`
  used yet) and the process has not chosen, it chooses Keras 2
  (`TF_USE_LEGACY_KERAS=1`), as a TFRS program must. A process whose
  `tf.keras` is settled keeps the Keras it has.
* `require_keras2(part)`, run when a Keras 2 part is first imported (the
  layers, losses, heads, training, the feature preprocessing): the same, and
  if `tf.keras` is Keras 3, raises `KerasVersionError` saying what to do. Exported
  SavedModels, `predict.py`, the data readers and the numpy parts
  (quantizer, feature spec, configs, metrics) work under either Keras.
"""

from __future__ import annotations

import os
import sys

__all__ = [
    "KerasVersionError",
    "import_tensorflow",
    "prefer_keras2",
    "require_keras2",
    "tf_keras_version",
]

ENV = "TF_USE_LEGACY_KERAS"
_ON = ("1", "true", "True")


class KerasVersionError(ImportError):
    """A Keras 2 part of rq_keras asked for where `tf.keras` is Keras 3."""


def _undecided() -> bool:
    """True while `tf.keras` can still become Keras 2: TensorFlow is not
    loaded, or it is and has not resolved `tf.keras` yet (it does on first
    use, from the environment then). Importing `tf_keras`, or `keras` 3 and
    using it directly, leaves `tf.keras` unresolved."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return True
    loader = getattr(tf, "__dict__", {}).get("keras")
    return loader is not None and not getattr(loader, "_tfll_initialized", True)


def tf_keras_version() -> str | None:
    """The version of the Keras that `tf.keras` is in this process, or None
    while it is undecided (TensorFlow not loaded, or `tf.keras` not resolved
    yet). Reading it settles `tf.keras`, as any use of `tf.keras` would."""
    if _undecided():
        return None
    tf = sys.modules["tensorflow"]
    if not hasattr(tf, "keras"):
        return None
    version = getattr(tf.keras, "version", None)
    if callable(version):
        return str(version())
    return str(getattr(tf.keras, "__version__", "2"))


def prefer_keras2() -> None:
    """Choose Keras 2 for `tf.keras` while it is undecided and the process has
    not chosen (`TF_USE_LEGACY_KERAS` unset or empty); otherwise change
    nothing."""
    if not os.environ.get(ENV) and _undecided():
        os.environ[ENV] = "1"


def require_keras2(part: str) -> None:
    """`prefer_keras2`, then fail with `KerasVersionError` if `tf.keras` is
    Keras 3 in this process, or will be (`TF_USE_LEGACY_KERAS` set to another
    value while it is undecided). `part` names what was asked for."""
    prefer_keras2()
    version = tf_keras_version()
    if version is None:
        if os.environ.get(ENV) in _ON:
            return
        found = f"{ENV}={os.environ.get(ENV)!r} selects Keras 3 for tf.keras"
    elif version.startswith("3."):
        found = f"TensorFlow was loaded with Keras {version} as tf.keras"
    else:
        return
    raise KerasVersionError(
        f"{part} is written for Keras 2 (tf_keras, with TensorFlow Recommenders), but "
        f"{found}. Start the process with "
        f"{ENV}=1 (in the shell, or os.environ['{ENV}'] = '1' before the first import of "
        "TensorFlow or Keras), or import rq_keras's head before TensorFlow. Exported "
        "SavedModels, predict.py and the data readers work under Keras 3 as they are "
        "(docs/keras.md)."
    )


def import_tensorflow():
    """`import tensorflow`, after `prefer_keras2`: how the parts of rq_keras
    that need TensorFlow but not Keras (readers, serving) load it."""
    prefer_keras2()
    import tensorflow

    return tensorflow
