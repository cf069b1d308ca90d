# Two commands on a fresh machine with Python 3.11 and pip: `make demo`, `make test`.
# Each sets itself up: uv (bootstrapped with pip into .tools/ if missing), then
# the locked environment in .venv.

PYTHON ?= python3
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)

ifeq ($(shell command -v uv 2>/dev/null),)
UV := .tools/bin/uv
UV_DEP := .tools/bin/uv
else
UV := uv
UV_DEP :=
endif

DEMO_AS_OF ?=
DEMO_FLAGS := --source sample $(if $(DEMO_AS_OF),--as-of $(DEMO_AS_OF))

.PHONY: setup demo test bench clean

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv

.venv/.synced: pyproject.toml uv.lock Makefile $(UV_DEP)
	$(UV) sync --locked --compile-bytecode
	@touch $@

# The project's own modules too: uv compiles only what it installs, and with
# PYTHONDONTWRITEBYTECODE set (common on servers and in containers) every run would compile
# them again (~0.1-0.2 s a process). compileall skips what is up to date.
setup: .venv/.synced
	@.venv/bin/python -m compileall -q -j0 flows transforms warehouse contracts >/dev/null

demo: setup
	.venv/bin/xasset run $(DEMO_FLAGS)
	@echo
	@echo "Example query (warehouse/sql/examples/latest_rut_correlation.sql):"
	@sed 's/^/    /' warehouse/sql/examples/latest_rut_correlation.sql
	@echo
	.venv/bin/xasset sql --file warehouse/sql/examples/latest_rut_correlation.sql

test: setup
	.venv/bin/pytest --durations=30

bench: setup
	.venv/bin/python -m bench

clean:
	rm -rf .venv .tools data .pytest_cache
