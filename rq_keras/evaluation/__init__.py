"""What a trained model is judged by (numpy; the plots use matplotlib).

* `metrics`: MAE, XAUC, normalized Gini, Spearman and their (+) variants on
  the rows with y > 0, total value, the trivial predictors (`evaluate`);
* `distribution_metrics`: the predictive distribution: quantile coverage,
  P(y > t) Brier scores and reliability;
* `distribution_scores`: proper scores of any head's quantiles: CRPS,
  pinball loss, quantile calibration with an atom at zero, P(y > 0) Brier
  and AUC;
* `code_report`: each code level's NLL against its marginal, accuracy
  (`CodeReport`);
* `calibration`: decile calibration, cumulative gain, and `write_plots`;
* `plots`: every matplotlib figure of a run;
* `output_columns`: the model's outputs as named table columns.
"""
