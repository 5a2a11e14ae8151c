# cryostash — the two commands of the README:
#   make demo   venv + install + CRIU, then examples/quickstart.py on the default store
#   make test   venv + install + CRIU + container runtimes, then ruff, mypy and the tests
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install completion man criu runtimes postgres demo examples test lint bench bench-s3 bench-daemon

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed completion

# Shell completion generated from the parser, into the venv (docs/cli.md: how a shell finds
# it): bash-completion, zsh site-functions and fish vendor folders under $(VENV)/share.
completion: $(VENV)/.installed
	mkdir -p $(VENV)/share/bash-completion/completions $(VENV)/share/zsh/site-functions \
		$(VENV)/share/fish/vendor_completions.d
	$(BIN)/cryostash completion bash > $(VENV)/share/bash-completion/completions/cryostash
	$(BIN)/cryostash completion zsh > $(VENV)/share/zsh/site-functions/_cryostash
	$(BIN)/cryostash completion fish > $(VENV)/share/fish/vendor_completions.d/cryostash.fish

# The man page, from the parser (the wheel ships it as share/man/man1/cryostash.1).
man: $(VENV)/.installed
	$(BIN)/python scripts/make-manpage

# CRIU >= 4.2: the system one if it is good enough, else a private prefix (idempotent).
criu: install
	$(BIN)/python -m cryostash.install.criu

# runc, iptables, busybox-static, podman, docker.io for the container-engine tests (idempotent).
runtimes:
	scripts/install-runtimes

# PostgreSQL binaries for the tests' private cluster (initdb, pg_ctl), if none is there.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; }

# `db upgrade` first: a default catalog left by an older cryostash is migrated (a new one is
# created at the current schema); cryostash itself never migrates a catalog silently.
demo: criu
	$(BIN)/python -m cryostash db upgrade
	$(BIN)/python examples/quickstart.py

# The three use-case examples (live migration, disaster recovery, sharing): each starts its
# own moto S3 server and PostgreSQL cluster on loopback (tests/test_examples.py runs them too).
examples: criu postgres
	$(BIN)/python examples/live_migration.py
	$(BIN)/python examples/disaster_recovery.py
	$(BIN)/python examples/sharing.py

lint: install
	$(BIN)/ruff check src tests examples $(wildcard bench)
	$(BIN)/mypy

# One pytest-xdist worker per CPU; a test file stays on one worker (its module fixtures are
# made once). Every worker has its own session fixtures (moto, PostgreSQL, dockerd...).
test: criu runtimes postgres lint
	$(BIN)/pytest -n auto --dist loadfile

# The end-to-end benchmark (criu / aws s3 sync vs cryostash, 512 MiB process): prints a
# table with ratios and goals, writes bench/results/checkpoint-<time>.json.
bench: criu
	$(BIN)/python bench/checkpoint_bench.py

# The daemon (issue 23): create + restore through `cryostash daemon` and the cold CLI against
# criu dump + sync + restore (8 and 64 MiB), ls latency, ls under load; bench/results/daemon-*.
bench-daemon: criu
	$(BIN)/python bench/daemon_bench.py

# S3 throughput: cryostash's data path vs `aws s3 sync` of the same 512 MiB image folder,
# on private moto servers on loopback (the AWS CLI goes into its own venv, made once).
bench-s3: install
	$(BIN)/python bench/s3_throughput.py
