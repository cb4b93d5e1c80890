"""Every configuration of a run, importable without TensorFlow.

`ModelConfig` holds the RQ-Reg model's hyperparameters, `QuantizerConfig`
the codebook's, `TrainConfig` a whole training run (data, optimisation,
distribution, and the two others). `config_from_dict` / `load_config` build a
`TrainConfig` from YAML with every key and type checked, `apply_overrides`
sets dotted keys (`--set model.units=64`); how plain values are read and
checked is `rq_keras.config.loading`. The command line reads the fields
(and `train.py --help` their choices) without starting TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from rq_keras.config.choices import CELLS, PREDICTIONS, REGRESSOR_INPUTS, check_distribution_options
from rq_keras.config.loading import (
    apply_overrides,
    dataclass_from,
    plain_values,
    read_yaml_mapping,
)
from rq_keras.features.labels import auto_zero_threshold
from rq_keras.quantizer.residual import ResidualQuantizer

__all__ = [
    "HEAD_CHOICES",
    "LABEL_SCALES",
    "MONITORS",
    "SEEDED_KEYS",
    "STRATEGIES",
    "ModelConfig",
    "QuantizerConfig",
    "TrainConfig",
    "config_dict",
    "config_from_dict",
    "load_config",
    "model_config",
]

# The unit of L_reg: the label's own (the paper), or the training labels' std
# (stored with the codebook), so that `delta` means the same on any scale.
LABEL_SCALES = ("none", "std")


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
        cell: `"lstm"`, `"gru"`, `"rnn"` or `"transformer"` (a causal
            Transformer decoder over the code sequence, the encoder output
            its prefix token; Table 4).
        transformer_layers: blocks of the `"transformer"` cell (2).
        transformer_heads: its attention heads (4); they divide `units`.
        encoder_units: hidden units of `f_enc`.
        num_cross_layers: DCN-v2 cross layers before `f_enc` (0: the paper).
        predictor_units: hidden units of `f_pred`.
        regressor_units: hidden units of `f_reg`.
        use_regressor: False: the "w/o f_reg" ablation.
        gen_weight: weight of L_gen (0: "w/o L_gen").
        reg_weight: lambda_1 (1.0).
        rnc_weight: lambda_2 (0.1; 0: "w/o L_rnc").
        crps_weight: weight of L_crps, the CRPS of level 1's distribution
            over its atoms against the label in `label_scale` units (0: not
            the paper's, off; `RQRegLoss`).
        temperature: tau of Rank-N-Contrast (2.0).
        delta: Huber threshold (2.0; 0.1 Criteo-SSC, 10.0 CIKM16), in the
            unit `label_scale` sets.
        label_scale: `"std"` (the default: L_reg on `y / s` and `y_hat / s`,
            s the std of the training labels stored in the codebook: `delta`
            is in stds and L_reg's size no longer grows with the label's
            unit; f_reg's `regressor` output then fits a mean, not a median)
            or `"none"` (L_reg on the label as it is: the paper).
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
            step; 1: every level-1 code is a branch, K_1 + 1 rows per
            example through step 2, so level 2 reads each level-1 code's
            own embedding as in training, and level 3 comes from the pass;
            see docs/model.md, "Which codebook, and which tree", for its
            serving cost). L - 1:
            exact, but with L = 3 that is (K_1 + 1)(K_2 + 1) rows per
            example, 2,401 at K = 48: for measuring the others' error, not for
            serving). At K = 48 0 and 1 give the same metrics to 3 decimals on
            CDNOW; with a coarse codebook (K = 16) 1 serves what the deeper
            levels learned (docs/model.md, "Which codebook, and which tree").
            See `RQDecoder`.
        teacher_forced_evaluation: what the validation loss (`val_gen`, and
            so `monitor: auto`) scores: `"auto"` (the default) follows
            `exact_levels`, so validation scores the distribution that is
            served: with 0, False; with `exact_levels` >= 1, True. False:
            each level reads the previous level's expected embedding, as the
            one-pass tree does. True: the NLL of the true code sequence, each
            level reading the true earlier codes, as the branched tree's
            level 2 reads each level-1 code. At K = 16 with level 1 branched
            the one-pass NLL swings from epoch to epoch and stopped a
            98,000-row complete_journey run at epoch 1 (validation
            Norm-Gini(+) 0.692); the sequence NLL falls smoothly to epoch 4-5
            (0.764) (docs/quality.md, "Stopping on what is served"); on
            nycflights' drifting test months that longer training overfit the
            deeper levels (CRPS 12.75 against 12.59). At K = 48 with one pass,
            True lets level 1 overfit (docs/quality.md, "Where the deeper
            levels stand"). See `RQDecoder`.
        components: the OptDist head's sub-distribution networks (4; the
            OptDist paper's best were 4-5). Other heads ignore it.
        selection_temperature: the temperature of the OptDist selection's
            Gumbel-softmax (1.0).
        alignment_weight: the weight of the OptDist selection's KL term
            towards the soft pseudo-labels (1.0).
    """

    units: int = 512
    code_embedding_dim: int = 512
    cell: str = "lstm"
    transformer_layers: int = 2
    transformer_heads: int = 4
    encoder_units: int = 512
    num_cross_layers: int = 0
    predictor_units: int = 512
    regressor_units: int = 128
    use_regressor: bool = True
    gen_weight: float = 1.0
    reg_weight: float = 1.0
    rnc_weight: float = 0.1
    crps_weight: float = 0.0
    temperature: float = 2.0
    delta: float = 2.0
    label_scale: str = "std"
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
    teacher_forced_evaluation: bool | str = "auto"
    components: int = 4
    selection_temperature: float = 1.0
    alignment_weight: float = 1.0

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"`cell` must be one of {CELLS}, got {self.cell!r}")
        if int(self.transformer_layers) < 1 or int(self.transformer_heads) < 1:
            raise ValueError(
                f"`transformer_layers` and `transformer_heads` must be >= 1, got "
                f"{self.transformer_layers} and {self.transformer_heads}"
            )
        if self.cell == "transformer" and int(self.units) % int(self.transformer_heads):
            raise ValueError(
                f"`transformer_heads` ({self.transformer_heads}) must divide `units` ({self.units})"
            )
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
        for name in ("gen_weight", "reg_weight", "rnc_weight", "crps_weight"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}")
        if isinstance(self.components, bool) or int(self.components) != self.components:
            raise ValueError(f"`components` must be an int >= 2, got {self.components!r}")
        if self.components < 2:
            raise ValueError(f"`components` must be an int >= 2, got {self.components!r}")
        if not (math.isfinite(float(self.alignment_weight)) and self.alignment_weight >= 0):
            raise ValueError(
                f"`alignment_weight` must be a finite number >= 0, got {self.alignment_weight!r}"
            )
        for name in ("temperature", "delta", "selection_temperature"):
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
        if not isinstance(self.teacher_forced_evaluation, bool) and (
            self.teacher_forced_evaluation != "auto"
        ):
            raise ValueError(
                f"`teacher_forced_evaluation` must be true, false or 'auto', got "
                f"{self.teacher_forced_evaluation!r}"
            )
        if not (math.isfinite(self.code_embedding_stddev) and self.code_embedding_stddev > 0):
            raise ValueError(
                f"`code_embedding_stddev` must be a finite number > 0, got "
                f"{self.code_embedding_stddev!r}"
            )

    @property
    def resolved_teacher_forced_evaluation(self) -> bool:
        """`teacher_forced_evaluation` with `"auto"` resolved: validation
        scores the served tree (True with `exact_levels` >= 1)."""
        if isinstance(self.teacher_forced_evaluation, bool):
            return self.teacher_forced_evaluation
        return self.exact_levels >= 1


STRATEGIES = ("auto", "mirrored", "multi_worker", "one_device")
MONITORS = ("auto", "val_loss", "val_gen", "val_reg", "val_rnc", "val_mae")
# TrainConfig.optimizer (rq_keras.training.optimizers.make_optimizer builds them).
OPTIMIZERS = ("lazy_adam", "adam")
# "rq_reg": the paper's model; "kmeans": RQ-Reg with one level (plain K-means
# classification, Table 5); the rest are the baseline heads of `rq_keras.models.baselines`.
HEAD_CHOICES = ("rq_reg", "kmeans", "mse", "log_mse", "huber", "ziln", "optdist")
# Heads without an RQ decoder report only these terms.
_HEAD_MONITORS = ("auto", "val_loss", "val_mae")


# L of the codebook when the config does not say (the paper's).
DEFAULT_LEVELS = 3


def model_config(config: ModelConfig | Mapping[str, Any] | None, kwargs: dict) -> ModelConfig:
    """A head's `ModelConfig`: `config` (a dict from `get_config` too) with the
    `ModelConfig` fields among `kwargs` (popped) applied; the default is
    `ModelConfig` with an unseeded (random) initialisation."""
    if isinstance(config, Mapping):
        config = ModelConfig(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
        )
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in fields}
    return dataclasses.replace(config or ModelConfig(seed=None), **overrides)


def config_dict(config: ModelConfig) -> dict[str, Any]:
    """`config` as plain JSON values (tuples as lists), for `get_config`."""
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()
    }


@dataclasses.dataclass(frozen=True)
class QuantizerConfig:
    """The residual quantizer fitted on the training labels (Algorithm 1).

    Attributes:
        num_levels: L, codes per label (None: 3, and 1 for `TrainConfig`'s
            head `"kmeans"`; `TrainConfig` writes the resolved number).
        codebook_size: K per level: one int or one per level (48).
        method: `"kmeans"` or `"kmedians"`.
        init: `"optimal"` or `"kmeans++"`.
        seed: seed of the `"kmeans++"` start.
        zero_threshold: the zero code's threshold (see `ResidualQuantizer`):
            `"auto"` (the default: when at least 1% of the training labels
            are exactly 0, `min(0.005, half the smallest non-zero |label|)`,
            so zeros get their own code and no non-zero label is coded 0;
            otherwise none), a number (the authors' released code: 0.005),
            or None (the paper: no zero code). The code tree's P(y > 0)
            needs the zero code on zero-inflated labels.
    """

    num_levels: int | None = None
    codebook_size: int | tuple[int, ...] = 48
    method: str = "kmeans"
    init: str = "optimal"
    seed: int = 0
    zero_threshold: float | str | None = "auto"

    def __post_init__(self):
        if isinstance(self.zero_threshold, str) and self.zero_threshold != "auto":
            raise ValueError(
                f"config: quantizer: `zero_threshold` must be a number, 'auto' or null, "
                f"got {self.zero_threshold!r}"
            )
        try:
            self.build()
        except (TypeError, ValueError) as err:
            raise ValueError(f"config: quantizer: {err}") from None

    def resolved_zero_threshold(self, labels=None) -> float | None:
        """The zero code threshold for these training labels (`"auto"` resolved)."""
        if self.zero_threshold != "auto":
            return self.zero_threshold
        return None if labels is None else auto_zero_threshold(labels)

    def build(self, clip_min: float | None = None, clip_max: float | None = None, labels=None):
        """The (unfitted) `ResidualQuantizer` this config describes (`labels`:
        the training labels, for `zero_threshold="auto"`)."""
        return ResidualQuantizer(
            num_levels=DEFAULT_LEVELS if self.num_levels is None else self.num_levels,
            codebook_size=list(self.codebook_size)
            if isinstance(self.codebook_size, tuple)
            else self.codebook_size,
            method=self.method,
            clip_min=clip_min,
            clip_max=clip_max,
            init=self.init,
            seed=self.seed,
            zero_threshold=self.resolved_zero_threshold(
                None
                if labels is None
                else np.clip(
                    np.asarray(labels, dtype=np.float64),
                    -np.inf if clip_min is None else clip_min,
                    np.inf if clip_max is None else clip_max,
                )
            ),
        )


# `batch_size="auto"`: at least this many steps an epoch, within the bounds.
AUTO_MIN_STEPS = 64
AUTO_MIN_BATCH, AUTO_MAX_BATCH = 32, 1024


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A training run: data, optimisation, distribution, quantizer and model.

    Attributes:
        dataset: a registered dataset name (`rq_keras.datasets`) whose splits
            are built from `raw_dir` into the output directory; or None and
            the three file lists below.
        raw_dir: raw files of `dataset` (default: the copy in `data/` for
            datasets that ship one).
        train_files: training files (text, Parquet or TFRecord).
        validation_files: validation files (early stopping); may be empty.
        test_files: test files (the reported metrics); may be empty.
        feature_spec: the feature spec YAML of the files.
        epochs: maximum epochs (the paper: 50).
        batch_size: global batch size, split over replicas, or `"auto"` (the
            default): at least 64 optimizer steps an epoch, the largest
            power of two <= training rows / 64, between 32 and 1,024 (the
            paper's 1,024 from 65,536 rows up). On CDNOW's 16,499 rows
            that is 256: the code classifier needs steps more than epochs
            (`benchmarks/results/code_learning.md`).
        learning_rate: Adam's learning rate (5e-4).
        optimizer: `"lazy_adam"` (the default: Adam whose embedding tables'
            sparse gradients update only the rows a batch holds,
            `rq_keras.training.optimizers.LazyAdam`) or `"adam"` (Keras'
            Adam, which decays and rewrites every row of every table each
            step). Dense weights get the same update from both.
        steps_per_epoch: training steps per epoch; None: one pass over the
            training files (multi-worker runs and `sampling_per_batch`, which
            need a known epoch length, compute it from the row count).
        shuffle_buffer: rows in the shuffle buffer.
        on_bad_rows: `"fail"` (stop at the first bad row, naming it) or
            `"skip"` (drop bad rows, counted in `data_report.json`).
        parquet_reader: how training and evaluation read Parquet files:
            `"pyarrow"` (the checked reader, the faster) or `"tensorflow-io"`
            (needs the `rq_keras[tfio]` extra; see `make_dataset`).
        monitor: the validation metric of early stopping (lower is better);
            `"auto"`: `val_gen` (the code classifier's NLL) for RQ-Reg with
            L_gen, else `val_mae`. f_reg's error (`val_mae` of the regressor)
            can bottom out epochs before the classifier has learned
            (`benchmarks/results/code_learning.md`).
        patience: epochs without improvement before stopping; None: never.
        min_delta: the smallest improvement of `monitor` that counts.
        sampling_k: k of the scheduled-sampling decay (Eq. 17).
        sampling_t0: t0 of the decay (the epoch where p = 0.5).
        sampling_per_batch: update p every batch from the fractional epoch.
        strategy: `"auto"`, `"mirrored"`, `"multi_worker"` or `"one_device"`.
        devices: devices for `mirrored` (all local GPUs, or the CPU, if
            empty) or `one_device` (its first entry); each must exist
            (`tf.config.list_logical_devices`).
        cpu_devices: split the host CPU into this many logical devices
            (`/cpu:0` ... ) before TensorFlow starts, for a local mirrored
            run without GPUs (`auto` then mirrors over them); None: one.
        seed: seeds the global TF seed, shuffling and the dataset split.
        head: `"rq_reg"` (the paper's model), `"kmeans"` (RQ-Reg with
            `quantizer.num_levels = 1`, its default for this head), or a baseline head of
            `rq_keras.models.baselines`: `"mse"`, `"log_mse"`, `"huber"`, `"ziln"` (on
            the same features and `f_enc`; `model.encoder_units`,
            `model.delta` and `model.seed` apply).
        quantizer: the `QuantizerConfig`.
        model: the `ModelConfig` (the paper's defaults).
    """

    dataset: str | None = None
    raw_dir: str | None = None
    train_files: tuple[str, ...] = ()
    validation_files: tuple[str, ...] = ()
    test_files: tuple[str, ...] = ()
    feature_spec: str | None = None
    epochs: int = 50
    batch_size: int | str = "auto"
    learning_rate: float = 5e-4
    optimizer: str = "lazy_adam"
    steps_per_epoch: int | None = None
    shuffle_buffer: int = 65_536
    on_bad_rows: str = "fail"
    parquet_reader: str = "pyarrow"
    monitor: str = "auto"
    patience: int | None = 5
    min_delta: float = 0.0
    sampling_k: float = 0.1
    sampling_t0: float = 10.0
    sampling_per_batch: bool = False
    strategy: str = "auto"
    devices: tuple[str, ...] = ()
    cpu_devices: int | None = None
    seed: int = 0
    head: str = "rq_reg"
    quantizer: QuantizerConfig = QuantizerConfig()
    model: ModelConfig = ModelConfig()

    def __post_init__(self):
        def bad(field, value, want):
            raise ValueError(f"config: `{field}` must be {want}, got {value!r}")

        if self.dataset is None and not self.train_files:
            raise ValueError("config: give `dataset`, or `train_files` and `feature_spec`")
        if self.dataset is not None and (self.train_files or self.feature_spec):
            raise ValueError("config: give `dataset` or `train_files`/`feature_spec`, not both")
        if self.train_files and not self.feature_spec:
            raise ValueError("config: `train_files` need a `feature_spec`")
        for name in ("epochs", "shuffle_buffer"):
            if getattr(self, name) < 1:
                bad(name, getattr(self, name), ">= 1")
        if self.batch_size != "auto" and (isinstance(self.batch_size, str) or self.batch_size < 1):
            bad("batch_size", self.batch_size, "an int >= 1 or 'auto'")
        if self.cpu_devices is not None and self.cpu_devices < 1:
            bad("cpu_devices", self.cpu_devices, ">= 1 or null")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            bad("steps_per_epoch", self.steps_per_epoch, ">= 1 or null")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            bad("learning_rate", self.learning_rate, "a finite number > 0")
        if self.optimizer not in OPTIMIZERS:
            bad("optimizer", self.optimizer, f"one of {OPTIMIZERS}")
        if self.on_bad_rows not in ("fail", "skip"):
            bad("on_bad_rows", self.on_bad_rows, "'fail' or 'skip'")
        if self.parquet_reader not in ("pyarrow", "tensorflow-io"):
            bad("parquet_reader", self.parquet_reader, "'pyarrow' or 'tensorflow-io'")
        if self.monitor not in MONITORS:
            bad("monitor", self.monitor, f"one of {MONITORS}")
        if self.patience is not None and self.patience < 1:
            bad("patience", self.patience, ">= 1 or null")
        if self.min_delta < 0:
            bad("min_delta", self.min_delta, ">= 0")
        if not self.sampling_k > 0:
            bad("sampling_k", self.sampling_k, "> 0")
        if self.strategy not in STRATEGIES:
            bad("strategy", self.strategy, f"one of {STRATEGIES}")
        if self.head not in HEAD_CHOICES:
            bad("head", self.head, f"one of {HEAD_CHOICES}")
        if self.quantizer.num_levels is None:
            # K-means classification is RQ-Reg with one level: its default.
            levels = 1 if self.head == "kmeans" else DEFAULT_LEVELS
            quantizer = dataclasses.replace(self.quantizer, num_levels=levels)
            object.__setattr__(self, "quantizer", quantizer)
        if self.head == "kmeans" and self.quantizer.num_levels != 1:
            bad("quantizer.num_levels", self.quantizer.num_levels, "1 for head 'kmeans'")
        if self.head not in ("rq_reg", "kmeans") and self.monitor not in _HEAD_MONITORS:
            bad("monitor", self.monitor, f"one of {_HEAD_MONITORS} for head {self.head!r}")

    def resolved_batch_size(self, train_rows: int) -> int:
        """`batch_size` with `"auto"` resolved for `train_rows` (see the attribute)."""
        if self.batch_size != "auto":
            return int(self.batch_size)
        per_step = max(1, train_rows // AUTO_MIN_STEPS)
        return int(min(AUTO_MAX_BATCH, max(AUTO_MIN_BATCH, 2 ** int(math.log2(per_step)))))

    @property
    def resolved_monitor(self) -> str:
        """`monitor` with `"auto"` resolved (see the attribute)."""
        if self.monitor != "auto":
            return self.monitor
        if self.head in ("rq_reg", "kmeans") and self.model.gen_weight > 0:
            return "val_gen"
        return "val_mae"

    def to_dict(self) -> dict[str, Any]:
        """Plain types (lists for tuples), as written to `config.yaml`."""
        return plain_values(dataclasses.asdict(self))

    def seeded(self, seed: int) -> TrainConfig:
        """This config with `seed` as the run's, the model's and the codebook's
        seed (`train.py --seed`; the keys are `SEEDED_KEYS`)."""
        return dataclasses.replace(
            self,
            seed=seed,
            model=dataclasses.replace(self.model, seed=seed),
            quantizer=dataclasses.replace(self.quantizer, seed=seed),
        )


# The keys one run seed sets (TrainConfig.seeded; `train.py --seed`).
SEEDED_KEYS = ("seed", "model.seed", "quantizer.seed")


def config_from_dict(values: Mapping[str, Any]) -> TrainConfig:
    """A `TrainConfig` from nested plain values (YAML), every key checked.

    Raises:
        ValueError: an unknown key, a wrong type or an invalid value, naming
            the key path (`model.units`).
    """
    return dataclass_from(TrainConfig, values, "")


def load_config(path: str | os.PathLike | None, overrides: Mapping[str, Any] = ()) -> TrainConfig:
    """A `TrainConfig` from a YAML file (or defaults) and dotted-key overrides.

    Args:
        path: a YAML file of `TrainConfig` keys (nested `quantizer:` and
            `model:` sections), or None.
        overrides: `{"model.units": 64, "epochs": 3}`, applied on top.
    """
    values: dict[str, Any] = {} if path is None else read_yaml_mapping(path)
    return config_from_dict(apply_overrides(values, overrides))
