# leadpulse — every entry point a developer or CI needs. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
BENCH_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv test test-unit test-deps demo chaos bench-core bench-step bench-pipeline bench-backtest bench bench-quick bench-collector test-tools worker dashboard kafka-start kafka-stop kafka-status registry-start registry-stop clean

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

$(STAMP): pyproject.toml constraints.txt setup.py scoring/model.py scoring/engagement.py scoring/state.py
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is needed (found $$($(PYTHON) --version))" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[test,tools]'
	@touch $@

venv: $(STAMP)  ## create .venv and install leadpulse with its test and tool extras

test: $(STAMP)  ## the whole suite; starts a local Kafka broker unless KAFKA_BOOTSTRAP_SERVERS is set
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP)  ## only the tests that need no broker and no registry
	$(PY) -m pytest -m 'not kafka and not registry' $(PYTEST_ARGS)

demo: $(STAMP)  ## local broker + worker + a few contacts walking from cold to hot; prints lifecycle changes
	$(PY) -m tools.demo

test-deps:  ## prometheus + promtool for tests/observability (apt-get as root; idempotent)
	deploy/install-test-deps.sh

chaos: $(STAMP)  ## fault injection, both guarantees (gates): 200k events, SIGKILLs, a broker restart, latency, resets, a 30 s blackout
	@mkdir -p bench/results
	@rc=0; \
	$(PY) -m tools.chaos --profile full --guarantee at_least_once --json bench/results/chaos-at_least_once.json || rc=1; \
	$(PY) -m tools.chaos --profile full --guarantee exactly_once --fuzz 0 --json bench/results/chaos-exactly_once.json || rc=1; \
	exit $$rc

bench-core: $(STAMP)  ## score updates per second of the scoring core on one core: compiled, then its pure-Python source
	@mkdir -p bench/results
	$(PY) bench/core.py
	LEADPULSE_PURE_PYTHON=1 $(PY) bench/core.py

bench-step: $(STAMP)  ## events/s of the worker's batch step alone, in-process, no Kafka (200k events over 50k contacts)
	$(PY) bench/step.py
	$(PY) bench/step.py --accounts

bench-pipeline: $(STAMP)  ## events/s of one worker draining 100k events over 10k contacts on the local broker
	$(PY) bench/pipeline.py

bench: $(STAMP)  ## side by side, 500k events: raw aiokafka, naive Faust, Quix, a Kafka Streams peer (Java, Maven), leadpulse (~15 min)
	$(PY) bench/compare.py $(BENCH_ARGS)

bench-quick: $(STAMP)  ## the same on 50k events, for development (~5 min; results in bench/results/compare-quick.*)
	$(PY) bench/compare.py --quick $(BENCH_ARGS)

bench-backtest: $(STAMP)  ## backtest speed on 1M simulated events (generated once into .leadpulse/bench)
	$(PY) bench/backtest.py

test-tools: $(STAMP)  ## the leadpulse CLI's tests
	$(PY) -m pytest tests/tools $(PYTEST_ARGS)

worker: $(STAMP)  ## run a scoring worker, settings from the environment
	$(VENV)/bin/leadpulse worker

dashboard: $(STAMP)  ## regenerate deploy/grafana/dashboards/leadpulse.json
	$(PY) deploy/grafana/build_dashboard.py

kafka-start: $(STAMP)  ## start the local development broker (prints its bootstrap address)
	$(PY) -m streams.localkafka start

kafka-stop: $(STAMP)  ## stop the local development broker
	$(PY) -m streams.localkafka stop

kafka-status: $(STAMP)  ## is the local development broker running?
	$(PY) -m streams.localkafka status

registry-start: $(STAMP)  ## start a local Schema Registry (Apicurio, in memory; prints its URL)
	$(PY) -m streams.localregistry start

registry-stop: $(STAMP)  ## stop the local Schema Registry
	$(PY) -m streams.localregistry stop

clean:  ## remove the virtualenv and local state (broker data, tables)
	-$(PY) -m streams.localkafka stop 2>/dev/null
	-$(PY) -m streams.localregistry stop 2>/dev/null
	rm -rf $(VENV) .leadpulse .pytest_cache .hypothesis

bench-collector: $(STAMP)  ## the HTTP collector on loopback: accepted events/s, p50/p99 ack latency at a few concurrencies (about 1 min)
	$(PY) bench/collector.py
