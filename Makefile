# remediator's front door: `make run` and `make test` on a fresh Debian machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the tests start for real (Alertmanager, sshd, nftables in a network
# namespace, logrotate over SSH) or call (ssh-keygen, ip, amtool; promtool from prometheus
# and systemd-analyze from systemd check deploy/).
DEBS   := prometheus-alertmanager openssh-server openssh-client nftables iproute2 logrotate prometheus systemd postgresql
# The benchmark's load generator (it also starts PostgreSQL and sshd, from DEBS).
BENCH_DEBS := wrk

# `make run` needs its secrets; local defaults so the front door opens as is. Set real
# ones in the environment (Slack deliveries fail, and are retried, with the dev token).
export REMEDIATOR_WEBHOOK_TOKEN ?= dev-webhook-token
export REMEDIATOR_ADMIN_TOKEN ?= dev-admin-token
export SLACK_BOT_TOKEN ?= xoxb-dev-token
export SLACK_SIGNING_SECRET ?= dev-signing-secret

.PHONY: run test lint format bench check ruletest schemas deps system-deps clean demo

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip --upgrade
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

deps: $(VENV)/.installed

system-deps:
	@missing=""; for p in $(DEBS) $(EXTRA_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

run: deps
	$(BIN)/remediator serve -c remediator.yml

check: deps
	$(BIN)/remediator check -c remediator.yml

# The shipped rules' unit tests: alerts in, expected decisions out (rules/tests/).
ruletest: deps
	$(BIN)/remediator test -c remediator.yml rules/tests/*.test.yml

# The JSON Schemas editors validate the YAML files with, regenerated from the models
# (tests/config/test_schema.py fails while a committed one differs).
schemas: deps
	for kind in remediator rules policies; do \
		$(BIN)/remediator schema $$kind > schemas/$$kind.schema.json || exit 1; \
	done

lint: deps
	$(BIN)/ruff check remediator tests bench
	$(BIN)/ruff format --check remediator tests bench
	$(BIN)/mypy remediator

format: deps
	$(BIN)/ruff format remediator tests bench
	$(BIN)/ruff check --fix remediator tests bench

test: system-deps deps lint check ruletest
	$(BIN)/pytest -p no:cacheprovider

# The chain from metric to remedy on loopback, to watch (type down, up, memory PCT,
# incidents, quit): the Debian Prometheus and Alertmanager, remediator in dry run.
demo: system-deps deps
	$(BIN)/python -m bench.demo

bench: deps
	$(MAKE) system-deps EXTRA_DEBS="$(BENCH_DEBS)"
	status=0; \
	$(BIN)/python -m bench.ingest || status=1; \
	$(BIN)/python -m bench.latency || status=1; \
	$(BIN)/python -m bench.held || status=1; \
	$(BIN)/python -m bench.failover || status=1; \
	$(BIN)/python -m bench.rules || status=1; \
	$(BIN)/python -m bench.offline || status=1; \
	exit $$status

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache .hypothesis
