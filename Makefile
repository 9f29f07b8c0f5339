# Set-up and the two jobs of the README. `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install benchmark clean

demo: $(VENV)/.installed
	$(BIN)/toolchain-restore demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest

benchmark: $(VENV)/.installed
	$(BIN)/python -m benchmarks.env_throughput

install: $(VENV)/.installed

# constraints.txt pins torch==2.13.0, the CPU build these machines carry on disk.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

clean:
	rm -rf $(VENV) runs .pytest_cache
