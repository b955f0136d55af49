# The README's two commands: `make demo` and `make test`. Everything they need is installed from here.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test quick lint unit bench clean

$(STAMP): pyproject.toml
	@# libfaketime runs the hub under a skewed clock in the reliability tests (Debian package faketime).
	@command -v faketime >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get update -qq && apt-get install -y -qq faketime >/dev/null) || \
		echo "faketime not installed: the clock-skew test will be skipped"; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/lead2cash demo $(DEMO_ARGS)

lint: install
	$(BIN)/ruff check lead2cash tests bench config
	@# docs: the Python blocks of the markdown pages (ruff formats fenced python blocks)
	$(BIN)/ruff format --check lead2cash tests bench config docs README.md
	$(BIN)/mypy lead2cash/canonical_model lead2cash/routes lead2cash/store lead2cash/config lead2cash/summary lead2cash/web lead2cash/connectors/http lead2cash/hub.py
	$(BIN)/lint-imports

# pytest exits 5 when it collected nothing: that is a failure here, like any other non-zero code.
# Everything, in three lanes: the quick lane's tests on two workers (they wait on sockets, not CPU); the
# other long tests (e2e, migration, reconcile, docs; they wait on sandboxes more than they compute) on two
# workers, a file each; then the reliability scenarios and the timed crash, outage and usage tests one at a
# time, since their timings and kills must not compete with each other for the two cores.
test: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow" -n 2 --dist loadfile $(PYTEST_ARGS)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "slow and not serial" -n 2 --dist loadfile $(PYTEST_ARGS)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m serial $(PYTEST_ARGS)

# The quick lane: everything but the tests marked slow (tests/reliability, tests/e2e and single long CLI,
# docs and crash tests, marked in place), under two minutes. Two workers, one test file each at a time
# (--dist loadfile: a file's fixtures stay in one process): most of these tests wait on sockets, not CPU.
quick: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow" -n 2 --dist loadfile $(PYTEST_ARGS)

unit: install
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

bench: install
	$(BIN)/python bench/router_overhead.py
	$(BIN)/python bench/sandbox_throughput.py
	$(BIN)/python bench/salesforce_api_calls.py
	$(BIN)/python bench/lead_to_cash.py --size small

clean:
	rm -rf $(VENV) .state .mypy_cache .ruff_cache .hypothesis
