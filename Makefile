# kdrec — `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
KDREC := $(VENV)/bin/kdrec
TORCH_PIN := torch==2.13.0
RUN_DIR := $(or $(KDREC_OUTPUTS),outputs)/make_run/$(shell date +%Y-%m-%d_%H-%M-%S)
# `make run`: conf/experiment/quickstart.yaml, 3 distillers x 3 seeds in 2 single-thread workers
QUICKSTART := experiment=quickstart
RUN_SWEEP := seed=1,2,3 distiller=none,kd,kd_dagfm
JOBS ?= 2

.DEFAULT_GOAL := help

help: ## show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	# the pinned CPU torch first: a bare torch requirement would pull a multi-GB CUDA build
	$(VENV)/bin/pip install -q $(TORCH_PIN)
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## create .venv/ and install kdrec with its dev extras

run: install ## default experiment: CIN teacher, DAGFM alone / + KD / + KD-DAGFM over 3 seeds, one table
	@# the teacher first, on every core: the sweep's jobs then share its cached checkpoint and logits
	$(KDREC) pretrain-teacher $(QUICKSTART)
	$(KDREC) distill -m $(QUICKSTART) $(RUN_SWEEP) device.threads=1 trainer.progress=false \
	    hydra/launcher=joblib hydra.launcher.n_jobs=$(JOBS) hydra.sweep.dir=$(RUN_DIR) \
	    hydra.callbacks.report.enabled=false
	@# latency is the same for every seed: measured on the seed-1 job of each distiller (jobs 0-2)
	$(KDREC) benchmark-flops -m run=$(RUN_DIR)/0,$(RUN_DIR)/1,$(RUN_DIR)/2 device.threads=1 \
	    hydra.sweep.dir=$(RUN_DIR)/latency > $(RUN_DIR)/latency.log
	$(KDREC) report $(RUN_DIR)

smoke: install ## a complete run on a tiny generated dataset (seconds)
	$(KDREC) distill experiment=smoke

test: install ## fast tests (real-data tests skip when ../shared/data is absent)
	$(VENV)/bin/pytest -q

test-slow: install ## slow tests: training on real data from ../shared/data
	$(VENV)/bin/pytest -q -m slow

bench: install ## throughput vs FuxiCTR and DeepCTR-Torch on Frappe_x1 (peers in their own venv)
	$(VENV)/bin/python scripts/bench_peers.py --epochs 2 --threads 1

kd-dagfm-table: install ## KD-DAGFM table on Frappe_x1 (6 presets x 3 seeds; resumes; ARGS= extra overrides)
	$(VENV)/bin/python scripts/kd_dagfm_table.py run $(ARGS)
	$(VENV)/bin/python scripts/kd_dagfm_table.py table

rok-table: install ## ROK table on Frappe_x1 and MovieLens-100K (3 seeds; resumes)
	$(VENV)/bin/python scripts/rok_table.py $(ARGS)

topk-table: install ## top-K distillation table on MovieLens-100K (3 seeds; resumes)
	$(VENV)/bin/python scripts/topk_table.py $(ARGS)

clean: ## remove outputs (not the venv)
	rm -rf outputs multirun

.PHONY: help install run smoke test test-slow bench kd-dagfm-table rok-table topk-table clean
