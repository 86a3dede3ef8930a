# DRAGON_DRIVER_MAKEFILE — the make targets people type.
#
# This file drives the autotools build: it regenerates configure when
# needed, configures an out-of-tree build directory, and runs make there.
#
#   make                    build everything in ./build
#   make check              build and run every test; prints each runner's summary;
#                           fails if the tests leave /dev/shm entries or processes
#   make install            install to PREFIX (default /usr/local); DESTDIR= honoured
#   make bench              run the benchmarks, print tables, write bench/results.jsonl
#   make deps               install the Debian packages the build and tests need
#   make check-asan         the C tests under AddressSanitizer (./build-asan)
#   make check-ubsan        ... UndefinedBehaviorSanitizer (./build-ubsan)
#   make check-tsan         ... ThreadSanitizer (./build-tsan)
#   make check-valgrind     the C tests under valgrind memcheck, errors fatal
#   make check-stress       the crash and hang stress tests at length (thousands of trials)
#   make check-watch-fallback  the transport's suites with channel waits off io_uring
#   make check-all          check, the three sanitizer builds and valgrind
#   make check-mp-suite     CPython's whole multiprocessing suite with 'dragon'
#   make check-mp-suite-multinode  (root) the same on a 2-node test cluster, round-robin
#   make check-cluster8     (root) the test cluster on 8 nodes: srun -N8 hostname
#   make distcheck          build and test the release tarball
#   make clean              remove the build directories
#
# Variables: PREFIX, DESTDIR, PYTHON (default /usr/bin/python3, never the
# python3 first on PATH), BUILD (build directory), CONFIGURE_FLAGS (passed to
# configure, e.g. --enable-asan), JOBS (parallel jobs, default: cores).

PREFIX ?= /usr/local
PYTHON ?= /usr/bin/python3
BUILD ?= build
CONFIGURE_FLAGS ?=
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

SRC := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
SUBMAKE = $(MAKE) --no-print-directory -C $(BUILD) -j$(JOBS)

# Packages for build, tests, benchmarks and the optional transports.
DEPS = gcc make autoconf automake libtool pkg-config check \
	python3 python3-dev python3-cffi python3-pytest libpython3.11-testsuite \
	mandoc groff-base man-db clang clang-format libclang-rt-14-dev valgrind \
	libfabric-dev libucx-dev iproute2 procps libssl-dev nftables \
	slurmctld slurmd slurm-client munge util-linux openssh-client openssh-server

.PHONY: all check install uninstall bench deps distcheck clean distclean \
	check-asan check-ubsan check-tsan check-valgrind check-all check-mp-suite \
	check-mp-suite-multinode \
	check-stress check-watch-fallback \
	check-cluster8 help

all: $(BUILD)/Makefile
	@$(SUBMAKE)

help:
	@sed -n '3,25p' $(SRC)/Makefile | sed 's/^# \{0,1\}//'

# configure is regenerated when it is missing; once a build directory
# exists, automake's own rules keep Makefile.in and configure up to date.
$(SRC)/configure: $(SRC)/configure.ac
	cd $(SRC) && autoreconf -fi

# The build directory is configured when it is new.  When PREFIX, PYTHON or
# CONFIGURE_FLAGS differ from what it was configured with, it is built again
# from scratch: libraries carry their install directory (run path), so a
# new prefix means relinking everything.
CONFIG_LINE = --prefix=$(abspath $(PREFIX)) PYTHON=$(PYTHON) $(CONFIGURE_FLAGS)
$(BUILD)/Makefile: $(SRC)/configure FORCE
	@if [ -f $@ ] && [ "$$(cat $(BUILD)/.driver-config 2>/dev/null)" != "$(CONFIG_LINE)" ]; then \
	  echo "configuration changed: building $(BUILD) again from scratch"; \
	  rm -rf $(BUILD); \
	fi
	@mkdir -p $(BUILD)
	@if [ ! -f $@ ]; then \
	  echo "configuring $(BUILD): $(CONFIG_LINE)"; \
	  (cd $(BUILD) && $(SRC)/configure $(CONFIG_LINE)) || exit 1; \
	  echo "$(CONFIG_LINE)" > $(BUILD)/.driver-config; \
	fi

FORCE:

# The tests run under leftover-guard, which fails the check when they leave
# segments in /dev/shm or processes behind (and removes them); the summary,
# printed last, lists them after the totals.  .check-started tells the
# summary which results are from this run.
check: $(BUILD)/Makefile
	@$(SUBMAKE); rc=0; touch $(BUILD)/.check-started; \
	  $(SRC)/build-aux/leftover-guard $(BUILD) $(SUBMAKE) -k check || rc=$$?; \
	  $(SRC)/build-aux/summarize-tests $(BUILD); s=$$?; \
	  [ $$rc -eq 0 ] && [ $$s -eq 0 ]

# A root install into the live system refreshes the dynamic linker's cache,
# so that `dragon` finds libdlaunch.so in /usr/local/lib at once.
install: $(BUILD)/Makefile
	@$(SUBMAKE) install
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then ldconfig; fi

uninstall: $(BUILD)/Makefile
	@$(SUBMAKE) uninstall

bench: $(BUILD)/Makefile
	@$(SUBMAKE)
	@$(MAKE) --no-print-directory -C $(BUILD) bench

distcheck: $(BUILD)/Makefile
	@$(SUBMAKE) distcheck

# check-<san>: the whole check in ./$(BUILD)-<san>, configured --enable-<san>.
check-asan check-ubsan check-tsan: check-%:
	@$(MAKE) --no-print-directory BUILD=$(BUILD)-$* CONFIGURE_FLAGS="$(CONFIGURE_FLAGS) --enable-$*" check
check-valgrind: $(BUILD)/Makefile
	@$(SUBMAKE)
	@$(MAKE) --no-print-directory -C $(BUILD) check-valgrind
check-all: check check-asan check-ubsan check-tsan check-valgrind

# The transport's suites with channel waits on the path of kernels that
# cannot wait on futexes through io_uring (DRAGON_DCHAN_WATCH_URING=0).
check-watch-fallback: $(BUILD)/Makefile
	@$(SUBMAKE)
	@$(SRC)/build-aux/leftover-guard $(BUILD) \
	  $(MAKE) --no-print-directory -C $(BUILD)/tests/dtransport check-watch-fallback

# The stress tests at length, under the guard like make check: the
# transport's crash campaign (make check runs 100 trials) with
# CRASH_TRIALS trials, the channel crash test at 5x make check's 1000
# trials, and the Python stress tests of the rare hangs (a Pipe writer
# killed in a large send, Pool results, close while threads are blocked)
# at 10-15x make check's trials (tests/python/Makefile.am).
CRASH_TRIALS ?= 1000
check-stress: $(BUILD)/Makefile
	@$(SUBMAKE)
	@$(SRC)/build-aux/leftover-guard $(BUILD) \
	  $(MAKE) --no-print-directory -C $(BUILD)/tests/dtransport \
	  check-stress CRASH_TRIALS=$(CRASH_TRIALS)
	@$(SRC)/build-aux/leftover-guard $(BUILD) \
	  $(MAKE) --no-print-directory -C $(BUILD)/tests/dchan check-stress
	@$(SRC)/build-aux/leftover-guard $(BUILD) \
	  $(MAKE) --no-print-directory -C $(BUILD)/tests/python check-stress

# The whole of test._test_multiprocessing, compared with 'spawn' on this
# machine (make check runs a subset of it).
check-mp-suite: $(BUILD)/Makefile
	@$(SUBMAKE)
	@$(MAKE) --no-print-directory -C $(BUILD)/tests/python check-mp-suite

# The same on a 2-node test cluster (as root), processes placed round-robin
# over the nodes; prints the counts against spawn's (make check runs a
# subset of it).
check-mp-suite-multinode: $(BUILD)/Makefile
	@$(SUBMAKE)
	@$(SRC)/build-aux/leftover-guard $(BUILD) \
	  $(MAKE) --no-print-directory -C $(BUILD)/tests/python check-mp-suite-multinode

# Eight nodes of the test cluster (tests/cluster/vcluster; make check runs
# it on 2 and 3), under the guard like make check.
check-cluster8: $(BUILD)/Makefile
	@$(SUBMAKE)
	@$(SRC)/build-aux/leftover-guard $(BUILD) \
	  $(MAKE) --no-print-directory -C $(BUILD)/tests/cluster check-cluster8

# Installs only what is missing, so a second run is quick.
deps:
	@missing=$$(for p in $(DEPS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; \
	  done); \
	if [ -z "$$missing" ]; then echo "make deps: all packages present"; exit 0; fi; \
	echo "make deps: installing$$(echo $$missing | tr '\n' ' ' | sed 's/^/ /')"; \
	sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	$$sudo apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-ubsan $(BUILD)-tsan

distclean: clean
	cd $(SRC) && rm -rf configure aclocal.m4 autom4te.cache config.h.in config.h.in~ \
	  $$(find . -name Makefile.in -not -path './.git/*') m4/*.m4 \
	  $$(ls build-aux/* | grep -v -e summarize-tests -e leftover-guard)
