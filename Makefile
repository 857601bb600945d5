# lensaudit: two commands do all set-up on a fresh machine.
#   make demo   - build .venv if missing, install, run the whole pipeline on the mock survey
#   make test   - build .venv if missing, install, run the test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_OUT ?= demo_out

.PHONY: demo test bench install clean mutation lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,spark,train,onnx]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/lensaudit demo --out $(DEMO_OUT) $(DEMO_ARGS)

test: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q -rs $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m pip install --quiet -e ".[test,spark,train,onnx,bench]"
	$(BIN)/python benchmarks/bench_cutouts.py
	$(BIN)/python benchmarks/bench_mock.py
	$(BIN)/python benchmarks/bench_fastpaths.py
	$(BIN)/python benchmarks/bench_catalog.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_scoring.py
	$(BIN)/python benchmarks/bench_demo.py
	$(BIN)/python benchmarks/bench_evaluate.py
	$(BIN)/python benchmarks/bench_inject.py
	$(BIN)/python benchmarks/bench_score_spark.py
	$(BIN)/python benchmarks/bench_coadd.py
	$(BIN)/python benchmarks/bench_survey_dryrun.py
	$(BIN)/python benchmarks/project_dr10.py
	$(BIN)/python benchmarks/perf_table.py

lint: install
	$(BIN)/ruff check src tests benchmarks

# mutation testing of the science and integrity modules (not part of `make test`: about 2 hours on 2 cores);
# writes benchmarks/results/mutation.json. MUTANTS='lensaudit.survey.*' limits it to some modules.
mutation: install
	$(BIN)/python -m pip install --quiet -e ".[test,spark,train,onnx,mutation]"
	rm -rf mutants
	$(BIN)/python benchmarks/mutation.py $(MUTANTS)

clean:
	rm -rf $(VENV) $(DEMO_OUT)
