# readshard: the two commands a new user needs are `make convert` and `make test`.
PYTHON   ?= python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
# CPU build by default (installs from local disk here); a GPU user runs e.g.
#   make install TORCH=   (keeps whatever torch the venv already has)
TORCH    ?= torch==2.13.0
# The extras CI installs (.ci/run): bench and cluster let tests/test_bench.py and
# tests/test_cluster.py run instead of skipping.
EXTRAS   ?= test,train,lora,bench,cluster
SAMPLE   ?= data/sample
JOBS     ?= 2
NPROC    ?= 1
CONFIG   ?= configs/sample.yaml
CONVERT_FLAGS ?=
# e.g. make train TRAIN_FLAGS="--max-steps 200 --overwrite" (any python -m train flag)
TRAIN_FLAGS ?=
STAMP    := $(VENV)/.installed

.PHONY: install convert sample test test-fast train predict bench clean

install: $(STAMP)

# compileall: pip compiles a regular install's modules, not an editable one's; uncompiled, with
# PYTHONDONTWRITEBYTECODE set every run recompiles them (~0.08 s of converter start-up).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]" $(if $(TORCH),"$(TORCH)")
	$(PY) -m compileall -q shards convert loaders train readshard_bench >/dev/null
	touch $(STAMP)

$(SAMPLE)/reads/train.fa: | $(STAMP)
	$(PY) -m sample.simulate --out $(SAMPLE)/reads

sample: $(SAMPLE)/reads/train.fa

convert: $(SAMPLE)/reads/train.fa
	$(PY) -m convert $(SAMPLE)/reads/train.fa --mapping $(SAMPLE)/reads/mapping.tsv \
	    --config configs/convert_sample.yaml --jobs $(JOBS) --out $(SAMPLE)/train --overwrite $(CONVERT_FLAGS)
	$(PY) -m convert $(SAMPLE)/reads/val.fa --mapping $(SAMPLE)/reads/mapping.tsv \
	    --config configs/convert_sample.yaml --jobs $(JOBS) --out $(SAMPLE)/val --overwrite $(CONVERT_FLAGS)

$(SAMPLE)/train/manifest.json $(SAMPLE)/val/manifest.json:
	$(MAKE) convert

train: $(SAMPLE)/train/manifest.json $(SAMPLE)/val/manifest.json
	if [ "$(NPROC)" -gt 1 ]; then \
	  $(VENV)/bin/torchrun --standalone --nproc_per_node $(NPROC) -m train --config $(CONFIG) $(TRAIN_FLAGS); \
	else \
	  $(PY) -m train --config $(CONFIG) $(TRAIN_FLAGS); \
	fi

# Classify reads with a trained run, e.g.
#   make predict RUN=out/sample INPUT=data/sample/reads/val.fa PREDICT_OUT=out/sample/predict PREDICT_FLAGS="--pairs off"
RUN ?= out/sample
INPUT ?= $(SAMPLE)/reads/val.fa
PREDICT_OUT ?= $(RUN)/predict
PREDICT_FLAGS ?=
predict: | $(STAMP)
	$(PY) -m train predict $(RUN) $(INPUT) --out $(PREDICT_OUT) $(PREDICT_FLAGS)

# What CI runs (.ci/run). With a venv installed without the bench/cluster extras, one line says
# which test files skip and how to include them.
test: $(STAMP)
	@$(PY) -c "from importlib.util import find_spec as f; m = [n for n in ('datasets', 'pyfaidx', 'distributed') if f(n) is None]; m and print('make test: ' + ', '.join(m) + ' not installed: tests/test_bench.py and tests/test_cluster.py skip; include them: make install EXTRAS=test,train,lora,bench,cluster')"
	$(PY) -m pytest -q

# The edit-run loop: everything not marked slow (end-to-end, real processes at scale).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) -m pip install -q -e ".[$(EXTRAS),bench]" $(if $(TORCH),"$(TORCH)")
	$(PY) -m loaders.bench

clean:
	rm -rf data/sample .pytest_cache
