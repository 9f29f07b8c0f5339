# Set-up and the two jobs of the README. `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install benchmark toolbox clean

demo: $(VENV)/.installed
	$(BIN)/toolchain-restore demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest

benchmark: $(VENV)/.installed
	$(BIN)/python -m benchmarks.env_throughput

install: $(VENV)/.installed

# How the shipped toolbox was trained (see toolchain_restore/weights/toolbox.md): all 12
# tools, then a second stage for the two tools that a heavier tool of their type rivalled.
toolbox: $(VENV)/.installed
	$(BIN)/toolchain-restore train-tools --iterations 1500 --batch-size 16 --lr 5e-4 --warmup 100 \
		--lr-min 1e-5 --schedule cosine --eval-every 100 --checkpoint-every 50 --out-dir runs/tools
	$(BIN)/toolchain-restore train-tools --tools 6 12 --init runs/tools/toolbox.safetensors --iterations 800 \
		--batch-size 32 --lr 2e-4 --lr-min 1e-6 --schedule cosine --eval-every 200 --checkpoint-every 50 \
		--seed 1 --out-dir runs/tools_stage2
	$(BIN)/toolchain-restore evaluate-tools --toolbox runs/tools_stage2/toolbox.safetensors --patches 200

# constraints.txt pins torch==2.13.0, the CPU build these machines carry on disk.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

clean:
	rm -rf $(VENV) runs .pytest_cache
