# The two commands of the README: `make run` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PITSTOP_HOME ?= $(CURDIR)/.pitstop
SPEC := dags/flights_delay.yaml
START ?= 2013-01-01
END ?= 2014-01-01

.PHONY: install run test bench bench-backfill bench-bootstrap bench-verify bench-s3 bench-pipeline bench-score bench-celery up down clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	@test -x $(BIN)/python || $(PYTHON) -m uv venv --quiet --python $(PYTHON) $(VENV)
	$(PYTHON) -m uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[example,test]'
	@touch $@

run: install
	$(BIN)/python dags/flights_delay/land.py
	$(BIN)/pitstop run $(SPEC) --start $(START) --end $(END)

# Test modules spread over TEST_WORKERS processes (pytest-xdist), each module on one worker
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

up: install
	$(BIN)/pitstop up

down:
	@test -x $(BIN)/pitstop && $(BIN)/pitstop down || true

bench: install
	$(BIN)/python bench/run.py

# Full-2013 feature backfill through a real scheduler, both ways (about 10-40 min; see bench/BACKFILL.md)
bench-backfill: install
	$(BIN)/python bench/backfill_throughput.py

# Full-2013 chunked backfill on the CeleryExecutor, 1 worker vs 2, as a ratio (needs redis-server; see bench/BACKFILL.md)
bench-celery: install
	$(BIN)/python bench/celery_workers.py

# Paired bootstrap of metric changes: per-resample sklearn loop vs bootstrap_deltas (~5 min; see bench/README.md)
bench-bootstrap: install
	$(BIN)/python bench/bootstrap.py

# Feature reads re-hashed against their manifests vs the same reads without (~5 min; see bench/README.md)
bench-verify: install
	$(BIN)/python bench/verify_reads.py

# Batch scoring of a week of days vs the champion's raw predict on the same rows (after `make run`; see bench/README.md)
bench-score: install
	$(BIN)/python bench/scoring.py

# Full-2013 `pitstop run` with the lake in a SeaweedFS bucket vs a folder, as a ratio (see bench/README.md)
bench-s3: install
	$(BIN)/python bench/s3_lake.py

# Full-2013 `pitstop run` stage times: cold, unchanged re-run, one new day, against DuckDB reading the same files (~10 min; see bench/README.md)
bench-pipeline: install
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(PITSTOP_HOME)
