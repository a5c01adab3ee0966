# isoadmin: `make run` opens the console on the embedded lab; `make test` runs the tests.
# Both install what they need first: Debian packages (as root, via apt-get), then a virtualenv.
# (While installing, a policy-rc.d keeps package scripts from starting system daemons.)

VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

# Build deps of libvirt-python (it ships as source only), the venv module, the Debian packages whose
# boot ISOs the labs serve, and the real stack of the real-stack tests (tests/reallab): OpenSSH, LVM,
# libvirtd + qemu, and what the image-host guest is built from; the downloaders the download tests run
# (curl, GNU Wget; BusyBox's wget comes with busybox-static).
APT_PACKAGES := python3-venv python3-dev libvirt-dev pkg-config gcc ipxe grub-rescue-pc memtest86+ \
	openssh-server openssh-client openssh-sftp-server lvm2 libvirt-daemon libvirt-daemon-driver-qemu \
	libvirt-clients qemu-system-x86 busybox-static cpio binutils procps util-linux dash curl wget shellcheck

.PHONY: run test test-fast bench system venv clean

run: venv
	$(VENV)/bin/isoadmin --lab

# Two workers (this machine has two cores): the real stack on one, the rest spread over both, a module per group.
PYTEST := $(PY) -m pytest -ra -n 2 --dist loadgroup

test: venv
	$(PYTEST)

# The inner loop: no real stack, no isoadmin started as a process of its own.
test-fast: venv
	$(PYTEST) -m "not reallab and not process" tests/unit tests/lab tests/cli tests/tui

# Benchmarks (not part of `make test`): one line per figure; the figures also go to build/bench.json.
bench: venv
	mkdir -p build
	$(PY) -m bench --json build/bench.json

system:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:" $$missing; \
	    guard=; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; \
	      chmod 755 /usr/sbin/policy-rc.d; guard=1; fi; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	    rc=$$?; [ -z "$$guard" ] || rm -f /usr/sbin/policy-rc.d; [ $$rc = 0 ] || exit $$rc; \
	  else \
	    echo "missing Debian packages; run as root:"; \
	    echo "  apt-get install --no-install-recommends" $$missing; exit 1; \
	  fi; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml | system
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info
