# The README's commands. Each target sets up what it needs on a fresh machine.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench bench-parts train kafka-jars clean

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PY) >/dev/null || { echo "need Python 3.11 ($(PY)) on PATH"; exit 1; }
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Resolve the Apache Kafka broker jars from Maven Central once (cached under ~/.cache).
kafka-jars: $(STAMP)
	$(BIN)/alert-classifier kafka jars

run: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/alert-classifier run

test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

# End-to-end through the real broker; the last line is one JSON object. See README "Speed".
bench: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python bench/pipeline_bench.py

bench-parts: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python bench/decode_bench.py
	OMP_NUM_THREADS=1 $(BIN)/python bench/feature_bench.py
	OMP_NUM_THREADS=1 $(BIN)/python bench/http_bench.py

train: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/alert-classifier train

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
