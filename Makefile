# netmeta — two commands do all the set-up: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/netmeta serve --config netmeta.yml

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

test: $(STAMP) lint
	# the UI tests drive Debian's chromium (Playwright never downloads a browser here)
	test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium)
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python bench/goflow2_ingest.py
	$(BIN)/python bench/community_id.py
	$(BIN)/python bench/geoip.py
	$(BIN)/python bench/netflow_decode.py
	$(BIN)/python bench/sflow_decode.py
	command -v nfcapd >/dev/null || apt-get install -y nfdump || echo "no nfdump: netflow_udp.py skips nfcapd"
	$(BIN)/python bench/netflow_udp.py
	$(BIN)/python bench/ami_http.py
	$(BIN)/python bench/beats.py
	$(BIN)/python bench/dashboard.py

clean:
	rm -rf $(VENV) data build *.egg-info
