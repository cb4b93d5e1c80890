"""Deprecated stub of `rq_keras.quantization` (rq_keras 0.2), removed in 0.4.

Its names moved: `rq_keras._deprecated.MOVED` gives where.
"""

from rq_keras._deprecated import module_getattr

__getattr__ = module_getattr(__name__)
