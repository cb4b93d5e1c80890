"""Configuration of the model, importable without TensorFlow.

`ModelConfig` holds the RQ-Reg model's hyperparameters; the command line
reads its fields (and `train.py --help` its choices) without starting
TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["CELLS", "LABEL_SCALES", "PREDICTIONS", "REGRESSOR_INPUTS", "ModelConfig"]

# Recurrent cells of the decoder (Table 4).
CELLS = ("lstm", "gru", "rnn")
# What f_reg reads (see `RQDecoder`): the logits as they are, or behind stop_gradient.
REGRESSOR_INPUTS = ("logits", "stopped")
# The unit of L_reg: the label's own (the paper), or the training labels' std
# (stored with the codebook), so that `delta` means the same on any scale.
LABEL_SCALES = ("none", "std")
# What the `prediction` output is (see `RQDecoder`): f_reg's sum (the paper), or
# the mean, the median or the mean given y > 0 of the predictive distribution
# over the code tree. Each is also an output of its own.
PREDICTIONS = ("regressor", "mean", "median", "positive_mean")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters of the RQ-Reg model.

    The sizes and loss weights default to the paper's (4.1.2). Three defaults
    differ from the paper, because with the paper's objective the code
    classifier does not learn on real LTV data (`benchmarks/results/
    code_learning.md`): f_reg reads the logits behind stop_gradient
    (`regressor_input="stopped"`), the code embeddings start at N(0, 1)
    (`code_embedding_stddev`, the authors' code), and the served prediction
    is the mean of the code tree's distribution (`prediction="mean"`).
    `presets/paper.yaml` sets the paper's objective exactly (`"logits"`,
    0.05, `"regressor"`).

    Attributes:
        units: recurrent cell units (512).
        code_embedding_dim: D, code embedding size (512).
        cell: `"lstm"`, `"gru"` or `"rnn"` (Table 4).
        encoder_units: hidden units of `f_enc`.
        num_cross_layers: DCN-v2 cross layers before `f_enc` (0: the paper).
        predictor_units: hidden units of `f_pred`.
        regressor_units: hidden units of `f_reg`.
        use_regressor: False: the "w/o f_reg" ablation.
        gen_weight: weight of L_gen (0: "w/o L_gen").
        reg_weight: lambda_1 (1.0).
        rnc_weight: lambda_2 (0.1; 0: "w/o L_rnc").
        temperature: tau of Rank-N-Contrast (2.0).
        delta: Huber threshold (2.0; 0.1 Criteo-SSC, 10.0 CIKM16), in the
            unit `label_scale` sets.
        label_scale: `"none"` (L_reg on the label as it is: the paper; the
            default) or `"std"` (L_reg on `y / s` and `y_hat / s`, s the std
            of the training labels stored in the codebook: `delta` is in
            stds, and L_reg's size no longer grows with the label's unit).
        cumulative_huber: L_reg's level terms on running sums, earlier levels
            detached (the authors' released code; False: the paper's Eq. 13).
        residual_regressor: a head for what the L codes leave over, added to
            the prediction and trained with a Huber term in L_reg (the
            authors' released code; False: the paper).
        rnc_cross_replica: under a distribution strategy, L_rnc contrasts
            each anchor with the global batch (True: the loss and gradients
            of one device) or with its replica's local batch (False).
        sampling_probability: initial scheduled-sampling `p` (1.0; the
            `ScheduledSampling` callback lowers it; 0.0 for "SS with p=0").
        seed: seeds initializers and sampling coins (None: unseeded).
        regressor_input: `"stopped"` (f_reg reads the logits behind
            stop_gradient, so L_reg trains f_reg only; the default) or
            `"logits"` (Eq. 10: L_reg's gradients reach the code classifier).
        code_embedding_stddev: the code embeddings' initial N(0, s) (1.0;
            the earlier default 0.05 leaves Rank-N-Contrast inert).
        prediction: what the `prediction` output is: `"mean"` (E[y|x] over
            the code tree, the default), `"median"`, `"positive_mean"`
            (E[y | x, y > 0]: the value if there is one, e.g. the spend of a
            customer who buys; it ranks buyers among themselves), or
            `"regressor"` (the paper's sum of f_reg's outputs). All four are
            outputs anyway.
        quantiles: the quantile levels of the `quantiles` output, each in
            (0, 1) ((0.1, 0.5, 0.9)).
        thresholds: the t of the `exceedance` output P(y > t) ((0.0,): the
            probability of a non-zero value, e.g. P(buy)).
        exact_levels: levels of the code tree expanded branch by branch when
            the distribution is computed (0, the default: none, the
            decoder's own autoregressive pass gives the atoms, no extra
            step; 1: every level-1 code is a branch, K_1 rows
            per example through steps 2..L, about 10 times the cost; L - 1:
            exact, but with L = 3 that is K_1 * K_2 rows per example, 2,401
            at K = 48: for measuring the others' error, not for serving). On
            CDNOW 0 and 1 give the same metrics to 3 decimals (docs/model.md, "The
            predictive distribution"). See `RQDecoder`.
    """

    units: int = 512
    code_embedding_dim: int = 512
    cell: str = "lstm"
    encoder_units: int = 512
    num_cross_layers: int = 0
    predictor_units: int = 512
    regressor_units: int = 128
    use_regressor: bool = True
    gen_weight: float = 1.0
    reg_weight: float = 1.0
    rnc_weight: float = 0.1
    temperature: float = 2.0
    delta: float = 2.0
    label_scale: str = "none"
    cumulative_huber: bool = False
    residual_regressor: bool = False
    rnc_cross_replica: bool = True
    sampling_probability: float = 1.0
    seed: int | None = 0
    regressor_input: str = "stopped"
    code_embedding_stddev: float = 1.0
    prediction: str = "mean"
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    thresholds: tuple[float, ...] = (0.0,)
    exact_levels: int = 0

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"`cell` must be one of {CELLS}, got {self.cell!r}")
        if self.label_scale not in LABEL_SCALES:
            raise ValueError(
                f"`label_scale` must be one of {LABEL_SCALES}, got {self.label_scale!r}"
            )
        if self.regressor_input not in REGRESSOR_INPUTS:
            raise ValueError(
                f"`regressor_input` must be one of {REGRESSOR_INPUTS}, got {self.regressor_input!r}"
            )
        sizes = ("units", "code_embedding_dim", "encoder_units", "predictor_units")
        for name in (*sizes, "regressor_units"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)!r}")
        if int(self.num_cross_layers) < 0:
            raise ValueError(f"`num_cross_layers` must be >= 0, got {self.num_cross_layers!r}")
        # Checked here, not first when the loss is built after the data pass.
        for name in ("gen_weight", "reg_weight", "rnc_weight"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}")
        for name in ("temperature", "delta"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}")
        if not 0.0 <= float(self.sampling_probability) <= 1.0:
            raise ValueError(
                f"`sampling_probability` must be in [0, 1], got {self.sampling_probability!r}"
            )
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"`prediction` must be one of {PREDICTIONS}, got {self.prediction!r}")
        check_distribution_options(self.quantiles, self.thresholds, self.exact_levels)
        if not (math.isfinite(self.code_embedding_stddev) and self.code_embedding_stddev > 0):
            raise ValueError(
                f"`code_embedding_stddev` must be a finite number > 0, got "
                f"{self.code_embedding_stddev!r}"
            )


def check_distribution_options(quantiles, thresholds, exact_levels) -> None:
    """Raises ValueError for quantile levels outside (0, 1), repeated or
    non-finite thresholds, or `exact_levels` < 0."""
    levels = [float(q) for q in quantiles]
    if any(not 0.0 < q < 1.0 for q in levels) or len(set(levels)) != len(levels):
        raise ValueError(f"`quantiles` must be distinct numbers in (0, 1), got {list(quantiles)}")
    values = [float(t) for t in thresholds]
    if any(not math.isfinite(t) for t in values) or len(set(values)) != len(values):
        raise ValueError(f"`thresholds` must be distinct finite numbers, got {list(thresholds)}")
    if isinstance(exact_levels, bool) or int(exact_levels) != exact_levels or exact_levels < 0:
        raise ValueError(f"`exact_levels` must be an int >= 0, got {exact_levels!r}")
