# Two commands do all the set-up on a fresh clone: `make run` (the main job) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
OUT ?= runs/demo

.PHONY: run test test-gpu format bench bench-store clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned to the local CPU wheel, so nothing pulls a CUDA build.
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/tcmr demo --out $(OUT)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The CUDA tests alone (they skip, with the reason, where torch sees no GPU).
test-gpu: $(STAMP)
	$(BIN)/python -m pytest -q -rs -m gpu

# Every benchmark of a few minutes, each on CUDA when torch sees a GPU, else on the CPU;
# results in bench/results/ under the device's name.
bench: $(STAMP)
	$(BIN)/python bench/features.py
	$(BIN)/python bench/evaluate.py
	$(BIN)/python bench/model_step.py
	$(BIN)/python bench/infer.py
	$(BIN)/python bench/synthetic_ablation.py

# The store benchmarks: a million-frame loader run and the chunk/shard sweep (long).
bench-store: $(STAMP)
	$(BIN)/python bench/loader.py
	$(BIN)/python bench/store_layout.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
