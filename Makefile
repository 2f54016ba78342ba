# vfio-dmabuf: PCI BARs as page-frame-only dma-bufs.  See README.md.
#
# This Makefile is for people; kbuild reads ./Kbuild when the modules are
# built with `make -C $KDIR M=$PWD`.

SHELL := /bin/bash

.PHONY: all setup kernel modules test demo bench check-patches clean help

all: modules

help:
	@echo "make demo           set up, build, boot the VM and show the whole job"
	@echo "make test           the whole suite: host tests, then the guest tests"
	@echo "make setup          install what the build and the tests need"
	@echo "make kernel         the debug test kernel with patches/ (cached)"
	@echo "make modules        the project's modules against that kernel"
	@echo "make bench          walk benchmarks on the performance kernel (not part of test)"
	@echo "make check-patches  checkpatch --strict and kernel-doc over patches/"

setup:
	@scripts/setup.sh

kernel: setup
	@scripts/build-kernel.sh test

modules: kernel
	@scripts/build-modules.sh test

test:
	@scripts/test.sh

demo:
	@scripts/demo.sh

bench:
	@scripts/bench.sh

check-patches: setup
	@scripts/check-patches.sh

clean:
	rm -rf build target
