# The two commands of the README: `make demo` and `make test`.
# Both create .venv and install the pinned stack on first use (idempotent).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    ?= out/demo
# Test workers (pytest-xdist), one per core of the 2-core reference machine;
# whole files go to one worker, so module fixtures are built once.
TEST_WORKERS ?= 2
DEMO_EPOCHS ?= 20

# TensorFlow's C++ start-up chatter (CUDA plugins on a CPU host) off.
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: setup test test-fast test-compat lint demo bench-setup bench-quantizer bench-input bench-metrics bench-train-step bench-roofline bench-optimizer bench-train-scaling bench-serving bench-profile bench-quality bench-scale bench-scale-tune bench-tune bench-code-learning bench-discretization bench-keras-versions specs clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing the pinned stack into $(VENV) (log: $(VENV)/install.log)"
	@( $(PY) -m pip install --upgrade pip \
	   && $(PY) -m pip install -r requirements.txt \
	   && $(PY) -m pip install --no-deps -e . ) > $(VENV)/install.log 2>&1 \
	  || { tail -n 40 $(VENV)/install.log; exit 1; }
	@touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Every test but the ones marked `slow` (they train, export or serve a model), for
# a quick round while editing; `make test` and CI run everything.
test-fast: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow"

# The second tested stack (requirements-compat.txt: TensorFlow 2.16 with
# tensorflow-io, numpy 1.26, pandas 2) in its own venv, on the compatibility
# subset: the model, data (both Parquet readers), training (multi-worker and a
# run through tensorflow-io included), export and the C++ serving check built
# against 2.16's own libraries. .ci/run runs it after `make test`.
COMPAT_VENV  := .venv-compat
COMPAT_PY    := $(COMPAT_VENV)/bin/python
COMPAT_STAMP := $(COMPAT_VENV)/.installed
COMPAT_TESTS := tests/test_quantization.py tests/test_code_encoder.py tests/test_decoder.py \
	tests/test_code_tree.py tests/test_losses.py tests/test_model.py tests/test_task.py \
	tests/test_data.py tests/test_heads.py tests/test_package.py tests/test_export.py \
	tests/test_training.py tests/test_predict.py tests/test_serving_client.py \
	tests/test_transformer_cell.py tests/test_metrics.py tests/test_report.py \
	tests/test_features.py tests/test_preprocessing.py tests/test_serving_check.py \
	tests/test_run_dir.py tests/test_deprecated.py tests/test_preemption.py \
	tests/test_keras_version.py tests/test_keras3.py tests/test_keras3_export.py

$(COMPAT_STAMP): requirements-compat.txt pyproject.toml
	@test -x $(COMPAT_PY) || $(PYTHON) -m venv $(COMPAT_VENV)
	@echo "installing the compatibility stack into $(COMPAT_VENV) (log: $(COMPAT_VENV)/install.log)"
	@( $(COMPAT_PY) -m pip install --upgrade pip \
	   && $(COMPAT_PY) -m pip install -r requirements-compat.txt \
	   && $(COMPAT_PY) -m pip install --no-deps -e . ) > $(COMPAT_VENV)/install.log 2>&1 \
	  || { tail -n 40 $(COMPAT_VENV)/install.log; exit 1; }
	@touch $(COMPAT_STAMP)

test-compat: $(COMPAT_STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(COMPAT_PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -p no:cacheprovider \
	  $(COMPAT_TESTS)

# Trains on the bundled CDNOW data (splits, codebook, features, model), evaluates
# on the test split, prints the metrics and the plots' paths; exports the model
# for TF Serving (checked) and serves one test row through the C++ loader.
demo: setup
	$(PY) train.py --dataset cdnow --output-dir $(OUT)/cdnow --epochs $(DEMO_EPOCHS) --overwrite --verbose 2
	$(PY) export.py --model-dir $(OUT)/cdnow --export-base $(OUT)/serving/cdnow
	$(PY) -m rq_keras.cli.serving_check --export-base $(OUT)/serving/cdnow \
	    --rows-from $(OUT)/cdnow/data/test.parquet --rows 1

bench-setup: setup
	@$(PY) -m pip install -r benchmarks/requirements.txt > $(VENV)/bench-install.log 2>&1 \
	  || { tail -n 40 $(VENV)/bench-install.log; exit 1; }

bench-quantizer: bench-setup
	$(PY) benchmarks/quantizer.py

bench-input: setup
	$(PY) benchmarks/input_pipeline.py

bench-metrics: setup
	$(PY) benchmarks/metrics.py

bench-train-step: setup
	$(PY) benchmarks/train_step.py

bench-roofline: setup
	$(PY) benchmarks/roofline.py

bench-optimizer: setup
	$(PY) benchmarks/optimizer_quality.py

bench-train-scaling: setup
	$(PY) benchmarks/train_scaling.py

bench-serving: setup
	$(PY) benchmarks/serving.py

bench-profile: setup
	$(PY) benchmarks/profile_train_step.py

# Learning rates chosen per head on the validation split (writes results/tuned.json) ...
bench-tune: setup
	$(PY) benchmarks/tune.py
	$(PY) benchmarks/tune.py --stage params

# Table 6: reconstruction error of each discretization (numpy only, seconds).
bench-discretization: setup
	$(PY) benchmarks/discretization.py

# ... which the quality benchmark (test split, 3 seeds) reads.
bench-quality: setup
	$(PY) benchmarks/quality.py --tuned benchmarks/results/tuned.json

# Issue 29: whole datasets, OptDist and LightGBM beside RQ-Reg, a learning
# curve and distribution scores; resumable per cell (benchmarks/work/scale).
bench-scale: bench-setup
	$(PY) benchmarks/scale.py

# Issue 29: five trials a head on validation (10% of the rows), the choice in
# results/scale_tuned.json, then the chosen settings on test (3 seeds, 100%).
bench-scale-tune: bench-setup
	$(PY) benchmarks/scale_tuning.py --run
	$(PY) benchmarks/scale.py --tuned benchmarks/results/scale_tuned.json --fractions 1

# Issue 30: the RQ-Reg head's CDNOW test figures through Keras 2 (train.py) and
# Keras 3 (examples/keras_rs_cdnow.py), 3 seeds each; resumable per cell.
bench-keras-versions: setup
	$(PY) benchmarks/keras_versions.py

# Issue 14: does the code classifier learn (validation split only)?
bench-code-learning: setup
	$(PY) benchmarks/code_learning.py

# Regenerates feature_specs/ from the dataset modules (a test checks they agree).
specs: setup
	$(PY) -m rq_keras.datasets --write-specs feature_specs

clean:
	rm -rf $(OUT) .pytest_cache .ruff_cache
