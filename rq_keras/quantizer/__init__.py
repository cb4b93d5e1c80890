"""The residual quantizer: a continuous target as L ordered codes (numpy only).

* `residual`: `ResidualQuantizer`: fit, encode, decode, save, load, report
  (paper section 3.2, Algorithm 1);
* `residual_fit`: the level loop of the fit;
* `clustering1d`: exact 1-D clustering: optimal (DP), quantile and k-means++
  partitions, Lloyd iterations;
* `tokens`: the code vocabulary's layout (`<start>`, `<zero>`, each level's
  codes) and the decision boundaries the encoders share;
* `codebook_json`: the codebook file (JSON with a digest);
* `codebook_report`: the codebook's reconstruction report and plot.

`ResidualQuantizer` is imported from `rq_keras.quantizer` (or `rq_keras`).
"""

from rq_keras.quantizer.residual import ResidualQuantizer

__all__ = ["ResidualQuantizer"]
