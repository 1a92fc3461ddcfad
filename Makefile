# mgtoolkit: `make demo` makes a clip, `make test` runs every test. Both install first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat constraints.txt pyproject.toml | cksum | cut -d' ' -f1)
PROMPT ?= A classic cocktail lounge vibe with smooth jazz piano and a cool, relaxed atmosphere.

.PHONY: install demo test test-fast lint format bench clean parity parity-venv binder-check

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[cpu,notebook,test,dev,cluster,midi]"
	# Basic Pitch's model file (nmp.onnx) for mgtoolkit.transcribe, without its TensorFlow dependency
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt basic-pitch
	rm -f $(VENV)/.installed-*
	touch $@

# The main job: one clip from the prompt of the app we follow, written to outputs/.
demo: install
	$(BIN)/python -m mgtoolkit generate "$(PROMPT)" \
	  --negative-prompt "low quality, average quality, noise" --seconds 5 --steps 20 --seed 120 --out outputs

# Every test, notebooks included, on the tiny models (no download).
test: install
	MGTOOLKIT_MODEL=tiny $(BIN)/python -m pytest --doctest-modules --nbval-lax --nbval-cell-timeout=600 mgtoolkit tests notebooks

test-fast: install
	MGTOOLKIT_MODEL=tiny $(BIN)/python -m pytest -n auto --dist loadfile -m "not slow and not browser and not parity" tests

lint: install
	$(BIN)/ruff check mgtoolkit tests benchmarks notebooks
	$(BIN)/ruff format --check mgtoolkit tests benchmarks

format: install
	$(BIN)/ruff format mgtoolkit tests benchmarks
	$(BIN)/ruff check --fix mgtoolkit tests benchmarks

# Parity with torch + diffusers (issue 9): torch gets a venv of its own (never the paddle one),
# pinned by tests/parity/requirements.txt; a missing torch venv then fails instead of skipping.
PARITY_VENV  ?= build/parity-venv
PARITY_STAMP := $(PARITY_VENV)/.installed-$(shell cat tests/parity/requirements.txt | cksum | cut -d' ' -f1)

parity-venv: $(PARITY_STAMP)

$(PARITY_STAMP): tests/parity/requirements.txt
	$(PYTHON) -m venv $(PARITY_VENV)
	$(PARITY_VENV)/bin/python -m pip install --quiet -r tests/parity/requirements.txt
	rm -f $(PARITY_VENV)/.installed-*
	touch $@

parity: install parity-venv
	MGTOOLKIT_MODEL=tiny MGTOOLKIT_PARITY_REQUIRED=1 MGTOOLKIT_PARITY_PYTHON=$(abspath $(PARITY_VENV))/bin/python \
	  $(BIN)/python -m pytest -m parity -rA tests/parity/test_parity.py tests/models/test_clip_tagger.py

bench: install
	$(BIN)/python benchmarks/bench_audioldm.py --preset audioldm-s-full-v2 --seconds 5 --steps 20

# Every notebook on the full-size default model (random weights laid in an HF cache as a download
# leaves them), offline, an empty MGTOOLKIT_CACHE, inside a 2 GiB cgroup v1 limit (root; says so
# otherwise). Prints seconds, peak, first error and disk per notebook; table in build/binder-check.md.
BINDER_ARGS ?=
binder-check: install
	$(BIN)/python benchmarks/binder_check.py $(BINDER_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
