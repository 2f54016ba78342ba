#!/bin/bash
# Runs some of guest-tests' cases in the guest, to iterate on them without
# the whole suite:
#
#   tests/vm/run.sh --out DIR -- tests/guest/cases.sh 'NAME PART|...'
#
# Loads the driver and the test importer and runs the set-up cases and the
# cases whose names contain one of the |-separated parts (guest-tests'
# VFIO_DMABUF_CASES filter), KTAP to stdout and $VM_OUT/cases.ktap. The
# programs and modules are taken from $VM_OUT/bin when a copy is there (so
# that a rebuild on the host cannot change them under a running guest),
# else from the build.
set -u
bin=build/bin/guest-tests
driver=drivers/vfio_dmabuf/vfio_dmabuf.ko
importer=tests/importer/vfio_dmabuf_importer.ko
if [ -d "$VM_OUT/bin" ]; then
	bin=$VM_OUT/bin/guest-tests
	driver=$VM_OUT/bin/vfio_dmabuf.ko
	importer=$VM_OUT/bin/vfio_dmabuf_importer.ko
fi
for m in "$driver" "$importer"; do
	insmod "$m" || exit 1
done
setup="page size|importer's device|bound by its ID|binds through driver_override"
VFIO_DMABUF_CASES="$setup|${1:?usage: cases.sh 'NAME PART|...'}" "$bin" | tee "$VM_OUT/cases.ktap"
exit "${PIPESTATUS[0]}"
