# kdrec — `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
KDREC := $(VENV)/bin/kdrec
TORCH_PIN := torch==2.13.0
NAME ?= smoke
WORKERS ?= 1
TEST_WORKERS ?= 2
RUN_RESULTS := $(or $(KDREC_OUTPUTS),outputs)/results

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
	@# conf/table/quickstart.yaml; its result files go to the outputs tree (not the committed results/),
	@# so a second `make run` reuses the cached teacher and finished jobs and only reprints the table
	$(KDREC) table quickstart --workers 2 paths.results=$(RUN_RESULTS)

smoke: install ## a complete run on a tiny generated dataset (seconds)
	$(KDREC) distill experiment=smoke

test: install ## fast tests on TEST_WORKERS pytest-xdist workers (real-data tests skip when ../shared/data is absent)
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS)

test-slow: install ## slow tests: training on real data from ../shared/data
	$(VENV)/bin/pytest -q -m slow

bench: install ## throughput vs FuxiCTR and DeepCTR-Torch on Frappe_x1 (peers in their own venv)
	$(VENV)/bin/python scripts/bench_peers.py --epochs 2 --threads 1

table: install ## a results table: make table NAME=smoke [WORKERS=2] [ARGS="overrides / --from-results"]
	$(KDREC) table $(NAME) --workers $(WORKERS) $(ARGS)

table-plan: install ## what a table has left: each job done / running / to run, the job-hours left (NAME=topk_gowalla)
	$(KDREC) table $(NAME) --dry-run $(ARGS)

table-park: install ## copy unfinished jobs' checkpoints into results/ so another machine resumes them (NAME=topk_gowalla)
	$(KDREC) table $(NAME) --park $(ARGS)

table-verify: install ## rerun a table's jobs from scratch and compare with results/ (NAME=smoke ARGS="--rows R --seeds 1")
	$(KDREC) table $(NAME) --workers $(WORKERS) --verify $(or $(VERIFY_DIR),outputs/verify/$(NAME)) $(ARGS)

kd-dagfm-table: install ## KD-DAGFM table on Frappe_x1 (6 presets x 3 seeds; resumes from results/; ARGS= extra)
	$(KDREC) table kd_dagfm --workers $(WORKERS) $(ARGS)

rok-table: install ## ROK table on Frappe_x1 and MovieLens-100K (3 seeds; resumes from results/)
	$(KDREC) table rok --workers $(WORKERS) $(ARGS)

topk-table: install ## top-K distillation tables on MovieLens-100K and Gowalla (3 seeds; resumes from results/)
	$(KDREC) table topk_ml100k --workers $(WORKERS) $(ARGS)
	$(KDREC) table topk_gowalla --workers $(WORKERS) $(ARGS)
	$(KDREC) table topk_gowalla_lightgcn --workers $(WORKERS) $(ARGS)

clean: ## remove outputs (not the venv)
	rm -rf outputs multirun

docs-tables: install ## write the tables in docs/ from the committed results/ (no training)
	$(KDREC) table kd_dagfm --from-results --latency skip --docs docs/kd_dagfm.md
	$(KDREC) table rok --from-results --latency skip --docs docs/rok.md
	$(KDREC) table topk_ml100k --from-results --latency skip --docs docs/topk.md
	$(KDREC) table topk_gowalla --from-results --latency skip --docs docs/topk.md
	$(KDREC) table topk_gowalla_lightgcn --from-results --latency skip --docs docs/topk.md

.PHONY: help install run smoke test test-slow bench table table-plan table-park table-verify kd-dagfm-table rok-table topk-table docs-tables clean
