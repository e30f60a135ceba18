# spotpatch: `make demo` and `make test` set up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench clean chromium postgresql

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e '.[dev,onnx,runtime,postgres]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/spotpatch demo --out demo

test: $(STAMP) chromium postgresql
	$(BIN)/ruff check spotpatch tests benchmarks
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# Installs a Debian package when possible (root or passwordless sudo, with apt-get):
# $(call apt_install,PACKAGE,what needs it)
apt_install = if [ "$$(id -u)" = 0 ]; then sudo=; elif sudo -n true 2>/dev/null; then \
	  sudo="sudo -n"; else sudo=no; fi; \
	if [ "$$sudo" != no ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "make: installing Debian's $(1) for $(2)"; \
	  apt="$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1)"; \
	  $$apt >/dev/null 2>&1 || { $$sudo apt-get update -qq >/dev/null 2>&1 && \
	    $$apt >/dev/null 2>&1; }; \
	fi

# The dashboard's browser test needs Debian's chromium: installed when missing and possible;
# otherwise that one test skips and says why.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  $(call apt_install,chromium,the dashboard's browser test); \
	  command -v chromium >/dev/null 2>&1 || \
	    echo "make: no chromium; the dashboard's browser test will skip"; \
	}

# The PostgreSQL tests start a server of their own from Debian's postgresql package: installed
# when missing and possible; otherwise those tests fail and say why.
PG_INITDB = command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
postgresql:
	@$(PG_INITDB) || { \
	  $(call apt_install,postgresql,the PostgreSQL tests); \
	  $(PG_INITDB) || echo "make: no PostgreSQL server; the PostgreSQL tests will fail"; \
	}

lint: $(STAMP)
	$(BIN)/ruff check spotpatch tests benchmarks
	$(BIN)/ruff format --check spotpatch tests benchmarks

clean:
	rm -rf demo .pytest_cache build *.egg-info
