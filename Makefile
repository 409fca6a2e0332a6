# ResiHMR for Blender — set-up and everyday commands.
# Everything runs inside .venv, created with the exact pins on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export BLENDER_USER_RESOURCES ?= $(CURDIR)/.blender-user

.PHONY: venv demo test bench lint extension clean

venv: $(STAMP)

# Torch is installed alone first with its exact pin so that nothing can resolve a CUDA build.
$(STAMP): pyproject.toml package.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0 numpy==1.26.4
	$(PY) -m pip install --quiet -e ".[dev,detect]"
	npm ci --no-audit --no-fund --loglevel=error  # the Khronos glTF validator, three.js, playwright-core
	# Debian's Chromium (three.js loads the GLB in it) and assimp (reads the FBX) for tests/test_clients.py; skipped
	# with a reason where neither is there nor apt-get (as root) can install them
	command -v chromium >/dev/null && command -v assimp >/dev/null || (command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium assimp-utils) || true
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m resihmr_blender demo --out out/demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m benchmarks.run

# Blender extension: one validated zip per platform in dist/ (windows-x64, macos-arm64, linux-x64), wheels bundled
extension: $(STAMP)
	$(PY) tools/build_extension.py --out dist

lint: $(STAMP)
	$(VENV)/bin/ruff check resihmr_blender tests tools benchmarks

clean:
	rm -rf out .blender-user .pytest_cache node_modules build dist
