# Two commands on a fresh machine with python3 and make: `make run` and `make test`.
# Everything they need is installed inside the repository (.bootstrap/ for uv and tox, .venv/ for Tessera).

PYTHON ?= python3
BOOT := .bootstrap
UV := $(BOOT)/bin/uv
TOX := $(BOOT)/bin/tox
export TOX_UV_PATH := $(abspath $(UV))
# Trust the system certificate store too (machines behind a TLS-inspecting proxy add their CA there).
export UV_SYSTEM_CERTS := 1
# xds-protos ships a stale copy of opentelemetry-proto's modules that overwrites the real ones
# (grpc/grpc#42926); installing opentelemetry-proto again, alone, puts the real ones back.
REPAIR := --reinstall-package opentelemetry-proto

.PHONY: run test bootstrap venv lint type proto py bench-smoke clean

run: venv  ## start etcd, redis, every service, a worker and beat (Ctrl-C stops them)
	.venv/bin/tessera dev up

test: bootstrap  ## every tox environment: lint, type, proto, py, bench-smoke
	$(TOX) run -e lint,type,proto,py,bench-smoke

lint type proto py bench-smoke: bootstrap
	$(TOX) run -e $@

bootstrap: $(BOOT)/.done

$(BOOT)/.done: tools/bootstrap-requirements.txt
	$(PYTHON) -m venv $(BOOT)
	$(BOOT)/bin/python -m pip install --quiet --disable-pip-version-check -r tools/bootstrap-requirements.txt
	touch $@

venv: .venv/.done

.venv/.done: $(BOOT)/.done uv.lock pyproject.toml
	$(UV) sync --all-packages --locked
	$(UV) sync --all-packages --locked $(REPAIR)
	touch $@

clean:  ## remove the bootstrap tools, the venv and tox environments (keeps .tessera/ data)
	rm -rf $(BOOT) .venv .tox
