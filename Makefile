# The two entry points of the suite (see README.rst):
#   make run     the migration suite against the host's QEMU
#   make check   our own tests, lint and type check, then the suite in strict mode
# Both set up what they need and are safe to rerun.

PYTHON  ?= python3
VENV    ?= .venv
ARCHES  ?= x86_64 aarch64 s390x ppc64 riscv64
AVOCADO  = $(VENV)/bin/avocado
# The matrix: every architecture, under TCG, and under KVM where this host
# has a usable /dev/kvm and a variants file saying which guests KVM runs.
VARIANTS_DIR = tests/migration/variants
ACCEL_FILE  := $(if $(shell test -r /dev/kvm -a -w /dev/kvm && echo kvm),$(wildcard $(VARIANTS_DIR)/accel-$(shell uname -m).yaml))
VARIANTS    ?= $(VARIANTS_DIR)/arch.yaml $(or $(ACCEL_FILE),$(VARIANTS_DIR)/accel-tcg.yaml)
# Extra arguments for `avocado run`, e.g. AVOCADO_ARGS="--mux-filter-only /run/arch/s390x".
AVOCADO_ARGS ?=
# Where job results go; `latest` there is the job `make run` just ran.
RESULTS ?= $(HOME)/avocado/job-results
# Tests at once (avocado.conf says 1).  make check runs two: on this 2-core
# CI machine that took 65 s where one at a time took 109 s, every test
# passing either way (README, "Speed").
PARALLEL ?=
SUITE    = $(AVOCADO) --config avocado.conf run --job-results-dir $(RESULTS) $(PARALLEL) tests/migration $(AVOCADO_ARGS) -m $(VARIANTS)
STAMP    = $(VENV)/.installed
TOOLCHAINS = binutils-aarch64-linux-gnu binutils-s390x-linux-gnu binutils-powerpc64-linux-gnu binutils-riscv64-linux-gnu $(shell apt-cache show binutils-loongarch64-linux-gnu >/dev/null 2>&1 && echo binutils-loongarch64-linux-gnu)

# What `make check` runs across QEMU versions (scripts/versions-matrix),
# and on the architectures and accelerators it does not run whole: the
# seed scenarios (those of QEMU's 2019 migration-test, tag `seed`) and
# every auto-converge step (the seed test checks only the first) on
# the newest QEMU of Debian 13 and of its backports with itself (the host's
# whole suite runs above, KVM included), and across these pairs: Debian
# 12's QEMU to 13's and back.  Every version and every test in CI's half
# hour would not fit since riscv64 and issue 14's tests came (README,
# "Speed"): `make versions-matrix` runs every test, every pair.
CHECK_PAIRS ?= 7.2-to-10.0.13 10.0.13-to-7.2
CHECK_SAME  ?= 11.1.3
CHECK_TAGS  ?= -t seed -t auto-converge

.PHONY: run check suite-strict versions-strict versions-matrix selftests lint qemu qemu-versions toolchains gitlab-ci-local browser guests venv clean

# The report is written whether the suite passed or not; the suite's
# verdict is make's.
run: venv qemu
	@rm -f $(RESULTS)/latest
	$(SUITE); status=$$?; \
	if [ -e $(RESULTS)/latest ]; then $(VENV)/bin/migtest-report $(RESULTS)/latest; fi; exit $$status

# The fetch of QEMU versions waits on the network while the suite keeps
# the cores busy: they run side by side.  The self-tests need the versions.
check: venv qemu toolchains
	$(MAKE) --no-print-directory -j2 --output-sync=target qemu-versions suite-strict
	$(MAKE) --no-print-directory selftests lint versions-strict

# Tests at a time: three under TCG on the 2-core CI machine (a pair keeps
# both cores busy only while it migrates; the four-architecture suite took
# 474 s three at a time against 597 s two at a time, README "Speed"), two
# under KVM, whose guests keep the cores busier.
CHECK_TASKS ?= 3
CHECK_KVM_TASKS ?= 2
CHECK_PARALLEL = --max-parallel-tasks $(CHECK_TASKS)
# make check runs every test under TCG on the four architectures of QEMU's
# own migration matrix, the seed scenarios on the others (riscv64), and
# under KVM (where the host has it) the seed scenarios, CPR and the dirty
# tracking that needs KVM: this host's software KVM takes four times as
# long per test as TCG, and the rest adds nothing KVM-specific to what TCG
# covers.  That keeps it within CI's half hour (README, "Speed").
# `make run` runs everything everywhere.
CHECK_ARCHES ?= x86_64 aarch64 s390x ppc64
CHECK_SEED_ARCHES ?= riscv64
# Not auto-converge's later steps under this host's software KVM: two at a
# time, a guest throttled to 90 % dirtied too little to hold the migration
# back (an ERROR, the test's limits too weak there; README "Speed").
CHECK_KVM_TAGS ?= -t seed -t dirty -t cpr
CHECK_SUITE = $(AVOCADO) --config avocado.conf run --job-results-dir $(RESULTS) tests/migration $(AVOCADO_ARGS)
TCG_VARIANTS = -m $(VARIANTS_DIR)/arch.yaml $(VARIANTS_DIR)/accel-tcg.yaml --mux-filter-only

suite-strict: venv qemu
	MIGTEST_STRICT=1 $(CHECK_SUITE) $(CHECK_PARALLEL) $(TCG_VARIANTS) $(CHECK_ARCHES:%=/run/arch/%)
	$(if $(CHECK_SEED_ARCHES),MIGTEST_STRICT=1 $(CHECK_SUITE) $(CHECK_PARALLEL) $(CHECK_TAGS) $(TCG_VARIANTS) $(CHECK_SEED_ARCHES:%=/run/arch/%))
	$(if $(ACCEL_FILE),MIGTEST_STRICT=1 $(CHECK_SUITE) --max-parallel-tasks $(CHECK_KVM_TASKS) $(CHECK_KVM_TAGS) -m $(VARIANTS_DIR)/arch.yaml $(ACCEL_FILE) --mux-filter-only /run/accel/kvm)

versions-strict: venv qemu-versions
	MIGTEST_STRICT=1 $(VENV)/bin/python scripts/versions-matrix --skip-host \
	  --results $(RESULTS) --same $(CHECK_SAME) --pairs $(CHECK_PAIRS) \
	  --avocado-arg "$(CHECK_TAGS) $(CHECK_PARALLEL)"

# Every version with itself, and every pair of versions: README's grid.
versions-matrix: venv qemu-versions
	$(VENV)/bin/python scripts/versions-matrix --results $(RESULTS)

selftests: venv qemu gitlab-ci-local browser
	$(VENV)/bin/python -m pytest -q selftests

lint: venv
	$(VENV)/bin/ruff format --check lib tests selftests scripts setup.py
	$(VENV)/bin/ruff check lib tests selftests scripts setup.py
	$(VENV)/bin/mypy

# The venv is rebuilt when the package's requirements change.
venv: $(STAMP)
$(STAMP): setup.py
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); \
	  else echo "error: cannot create a venv: as root, run apt-get install python3-venv" >&2; exit 1; fi; }
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

qemu:
	@scripts/install-qemu $(ARCHES)

# Every QEMU version Debian ships, for the qemu_version* parameters, into
# ~/.cache/migtest/qemu (or $MIGTEST_QEMU_CACHE); the host's own version is
# linked, the others are fetched (as root).  Reruns reuse what is there.
# Some only: make qemu-versions QEMU_VERSIONS="10.0.13 11.1.3"
qemu-versions:
	@scripts/qemu-versions $(QEMU_VERSIONS)

# Cross binutils let the self-tests rebuild every guest; without them (and
# without root to install them) those self-tests are skipped.
toolchains:
	@for p in $(TOOLCHAINS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "note: guest rebuild checks need:$$missing (apt-get install as root)"; fi; \
	fi

# Headless Chromium shows the merged report at 1400 pixels for its
# self-test (selftests/test_report_browser.py): 115 MB to download, ~40 s
# to install.  Without it and without root, that self-test is skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	  else echo "note: the report's browser self-test needs chromium (apt-get install as root)"; fi; }

# gitlab-ci-local (npm) runs .gitlab-ci.yml on this host, without GitLab
# or docker, for its self-test (selftests/test_gitlab_ci.py; README,
# "GitLab CI").  4.63.0 is the newest whose dependencies all still run on
# Node 18, Debian 12's (from 4.64 some need Node 20; 4.74 and 4.75 need
# Node 22); it needs rsync.  Without them and without root to install
# them, that self-test is skipped.
GITLAB_CI_LOCAL_VERSION = 4.63.0
gitlab-ci-local: .tools/.gitlab-ci-local-$(GITLAB_CI_LOCAL_VERSION)
.tools/.gitlab-ci-local-$(GITLAB_CI_LOCAL_VERSION):
	@for tool in node:nodejs npm:npm rsync:rsync; do \
	  command -v $${tool%%:*} >/dev/null 2>&1 || missing="$$missing $${tool#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "note: the GitLab CI self-test needs:$$missing (apt-get install as root)"; exit 0; fi; \
	fi; \
	npm install --prefix .tools --no-audit --no-fund --loglevel=error gitlab-ci-local@$(GITLAB_CI_LOCAL_VERSION) && touch $@

guests:
	$(MAKE) -C guests

clean:
	rm -rf $(VENV) build *.egg-info
