# The two commands of the README: `make demo` and `make test`.
# Both create .venv and install the pinned stack on first use (idempotent).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    ?= out/demo

export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup test lint demo bench-setup bench-quantizer bench-input bench-metrics bench-train-step specs clean

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
	$(PY) -m pytest -q

demo: setup
	$(PY) -m rq_keras.datasets cdnow --raw-dir data/cdnow --out-dir $(OUT)/cdnow --seed 0 >/dev/null
	@echo "CDNOW customers: splits, feature spec and summary.json in $(OUT)/cdnow/"
	$(PY) -m rq_keras.quantize --input $(OUT)/cdnow/train.parquet \
	  --column holdout_spend --clip-min 0 --levels 3 --codebook-size 48 --output $(OUT)/codebook.json

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

# Regenerates feature_specs/ from the dataset modules (a test checks they agree).
specs: setup
	$(PY) -m rq_keras.datasets --write-specs feature_specs

clean:
	rm -rf $(OUT) .pytest_cache .ruff_cache
