# The two commands a newcomer needs: `make run` (whole system, foreground) and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed-$(shell sha1sum pyproject.toml 2>/dev/null | cut -c1-12)
BENCH_STAMP := .venv/.bench-installed-$(shell sha1sum pyproject.toml 2>/dev/null | cut -c1-12)

.PHONY: run up down test bench bench-sink bench-rebuild bench-worker chaos bench-venv infra venv token topics migrate schemas

run: infra  ## everything in the foreground; Ctrl-C stops it all
	scripts/services.sh run

up: infra  ## everything in the background
	scripts/services.sh start
	@cat docs/try-it.txt

down:  ## stop everything `make up` started; no process or port left behind
	scripts/services.sh stop
	scripts/kafka.sh stop
	scripts/postgres.sh stop

test: venv  ## the whole suite, against its own broker and Postgres
	scripts/test.sh $(ARGS)

bench-sink: venv  ## the sink's events/s and lag, against its own broker and Postgres (ARGS: see --help)
	scripts/isolated.sh $(PY) -m tests.sink.bench_sink $(ARGS)

bench-rebuild: bench-venv  ## a worker's restart and rebuild from the changelog, 10k trips/100k bookings (ARGS: see --help)
	bench/infra.sh rebuild $(ARGS)

bench: bench-venv  ## OpenRide vs a row-lock baseline; report in docs/benchmarks/ (ARGS=--quick for a smoke run)
	bench/infra.sh run $(ARGS)

bench-worker: bench-venv  ## one worker's commands/s draining a backlog, with CPU (ARGS: see --help)
	bench/infra.sh drain $(ARGS)

chaos: venv  ## load + SIGKILLs of worker, sink and gateway, then the invariant checker
	bench/infra.sh chaos $(ARGS)

bench-venv: venv $(BENCH_STAMP)

$(BENCH_STAMP): pyproject.toml
	.venv/bin/pip install -q -e '.[test,bench]'
	rm -f .venv/.bench-installed-* && touch $@

infra: venv
	scripts/kafka.sh start
	scripts/postgres.sh start >/dev/null
	$(PY) -m sinks.migrate
	$(PY) -m tools.create_topics

venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml
	@python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (python3 is %d.%d)" % sys.version_info[:2])'
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -e '.[test]'
	rm -f .venv/.installed-* && touch $@

schemas: venv  ## regenerate the published JSON Schema files (schemas/) from the wire models
	$(PY) -m tools.write_schemas

token:  ## make token SUB=<user> ROLE=<RIDER|DRIVER|ADMIN|SERVICE>
	@$(PY) -m gateway.token --sub "$(SUB)" --role "$(ROLE)"
