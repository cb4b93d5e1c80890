"""Configuration of the model, importable without TensorFlow.

`ModelConfig` holds the RQ-Reg model's hyperparameters; the command line
reads its fields (and `train.py --help` its choices) without starting
TensorFlow.
"""

from __future__ import annotations

import dataclasses

__all__ = ["CELLS", "REGRESSOR_INPUTS", "ModelConfig"]

# Recurrent cells of the decoder (Table 4).
CELLS = ("lstm", "gru", "rnn")
# What f_reg reads (see `RQDecoder`): the logits as they are, or behind stop_gradient.
REGRESSOR_INPUTS = ("logits", "stopped")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters of the RQ-Reg model (defaults: the paper's, 4.1.2).

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
        delta: Huber threshold (2.0; 0.1 Criteo-SSC, 10.0 CIKM16).
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
        seed: seeds initializers and sampling coins.
        regressor_input: `"logits"` (Eq. 10: L_reg's gradients reach the code
            classifier) or `"stopped"` (f_reg reads the logits behind
            stop_gradient; see `RQDecoder`).
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
    cumulative_huber: bool = False
    residual_regressor: bool = False
    rnc_cross_replica: bool = True
    sampling_probability: float = 1.0
    seed: int = 0
    regressor_input: str = "logits"

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"`cell` must be one of {CELLS}, got {self.cell!r}")
        if self.regressor_input not in REGRESSOR_INPUTS:
            raise ValueError(
                f"`regressor_input` must be one of {REGRESSOR_INPUTS}, got {self.regressor_input!r}"
            )
