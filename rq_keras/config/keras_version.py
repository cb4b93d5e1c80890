"""Which Keras `tf.keras` is in this process, and rq_keras's rule for it.

rq_keras's head, layers, losses and training are written for Keras 2
(`tf_keras`), on TensorFlow Recommenders, which needs `tf.keras` to be Keras 2.
TensorFlow routes `tf.keras` to Keras 2 only when `TF_USE_LEGACY_KERAS` is
`1` / `true` / `True` when it loads; since TensorFlow 2.16 the default is
Keras 3. So:

* `import rq_keras` changes nothing: no environment variable, no import of
  TensorFlow or Keras.
* `prefer_keras2()`, run when a part of rq_keras that loads TensorFlow is
  first imported (the data pipeline, serving, the command lines): if
  TensorFlow is not loaded yet and the process has not chosen, it chooses
  Keras 2 (`TF_USE_LEGACY_KERAS=1`), as a TFRS program must. A process that
  imported TensorFlow first keeps the Keras it has.
* `require_keras2(part)`, run when a Keras 2 part is first imported (the
  layers, losses, heads, training, the feature preprocessing): the same, and
  if TensorFlow is already loaded with Keras 3 as `tf.keras`, raises
  `KerasVersionError` saying what to do. Exported SavedModels, `predict.py`,
  the data readers and the numpy parts (quantizer, feature spec, configs,
  metrics) work under either Keras.
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


def tf_keras_version() -> str | None:
    """The version of the Keras that `tf.keras` is in this process, or None
    while TensorFlow is not loaded (then nothing is decided yet).

    Reading it settles `tf.keras` (TensorFlow resolves it on first use, from
    the environment at that moment), as any use of `tf.keras` would.
    """
    tf = sys.modules.get("tensorflow")
    if tf is None or not hasattr(tf, "keras"):
        return None
    version = getattr(tf.keras, "version", None)
    if callable(version):
        return str(version())
    return str(getattr(tf.keras, "__version__", "2"))


def prefer_keras2() -> None:
    """Choose Keras 2 for `tf.keras` if TensorFlow is not loaded and the
    process has not chosen (`TF_USE_LEGACY_KERAS` unset or empty); otherwise
    change nothing."""
    if "tensorflow" not in sys.modules and not os.environ.get(ENV):
        os.environ[ENV] = "1"


def require_keras2(part: str) -> None:
    """`prefer_keras2`, then fail with `KerasVersionError` if `tf.keras` is
    Keras 3 in this process, or will be (`TF_USE_LEGACY_KERAS` set to another
    value before TensorFlow loads). `part` names what was asked for."""
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
