#!/bin/bash
# The exporter's guest tests: loads the driver and the test importer (built
# in-tree by kbuild) and runs guest-tests (built statically on the host by
# scripts/build-guest-programs.sh), writing its KTAP into $VM_OUT/ktap/exporter.ktap.
# Runs as root inside the VM, in the repository (see tests/vm/run.sh).
set -u
ktap=$VM_OUT/ktap/exporter.ktap
mkdir -p "$(dirname "$ktap")"

# A module that does not load is a failed case, not a missing file.
for m in drivers/vfio_dmabuf/vfio_dmabuf.ko tests/importer/vfio_dmabuf_importer.ko; do
	if ! insmod "$m"; then
		printf 'KTAP version 1\n1..1\nnot ok 1 - insmod %s\n' "$m" >"$ktap"
		exit 1
	fi
done
build/bin/guest-tests >"$ktap"
