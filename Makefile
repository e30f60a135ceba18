# spotpatch: `make demo` and `make test` set up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench clean chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e '.[dev,onnx,postgres]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/spotpatch demo --out demo

test: $(STAMP) chromium
	$(BIN)/ruff check spotpatch tests benchmarks
	$(BIN)/python -m pytest -q

# The dashboard's browser test needs Debian's chromium: installed when missing and possible (root
# or passwordless sudo, with apt-get); otherwise that one test skips and says why.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	  else sudo=no; fi; \
	  if [ "$$sudo" != no ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make: installing Debian's chromium for the dashboard's browser test"; \
	    $$sudo apt-get install -y -qq chromium >/dev/null 2>&1 || \
	    { $$sudo apt-get update -qq >/dev/null 2>&1 && \
	      $$sudo apt-get install -y -qq chromium >/dev/null 2>&1; }; \
	  fi; \
	  command -v chromium >/dev/null 2>&1 || \
	    echo "make: no chromium; the dashboard's browser test will skip"; \
	}

lint: $(STAMP)
	$(BIN)/ruff check spotpatch tests benchmarks
	$(BIN)/ruff format --check spotpatch tests benchmarks

clean:
	rm -rf demo .pytest_cache build *.egg-info
