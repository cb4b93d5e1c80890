"""Keras layers of rq_keras.

The Keras 2 layers (through `tf_keras`; each module checks the process's
Keras when it loads, `rq_keras.config.keras_version.require_keras2`):
`ResidualCodeEncoder`, `MLPEncoder`, `RQDecoder`, `CausalTransformerCell`,
`ListPooling`, `SignedLog`. The Keras-agnostic math they are skins over
(`decoding`: the decoder's steps and code tree; `encoding`: the label
encoder and f_enc; `assembly`: the head from a `ModelConfig`; `code_tree`:
the atoms and their summaries) imports in either Keras, and `keras3` holds
the Keras 3 layers over the same math (`RQRegHead`, `RQRegRanker`, ...).
The names below load on first use.
"""

import importlib

from rq_keras.config.exports import lazy_namespace

_EXPORTS = {
    "CausalTransformerCell": "rq_keras.layers.transformer_cell",
    "ListPooling": "rq_keras.layers.list_pooling",
    "MLPEncoder": "rq_keras.layers.encoder",
    "RQDecoder": "rq_keras.layers.decoder",
    "ResidualCodeEncoder": "rq_keras.layers.code_encoder",
    "SignedLog": "rq_keras.layers.signed_log",
}
__all__ = [
    "CausalTransformerCell",
    "ListPooling",
    "MLPEncoder",
    "RQDecoder",
    "ResidualCodeEncoder",
    "SignedLog",
]
__getattr__, __dir__ = lazy_namespace(globals(), _EXPORTS)


def register_keras2_layers() -> None:
    """Imports every Keras 2 layer module of rq_keras: each registers its
    layers with `tf_keras`' serialization, which loading a saved model needs."""
    for module in sorted(set(_EXPORTS.values())):
        importlib.import_module(module)
