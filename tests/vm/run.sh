#!/usr/bin/env bash
# Boot the project's kernel under virtme-ng with the test devices, run a
# command in the guest, and judge the run: the command's status, and the
# kernel's state after it (tests/vm/check_log.py: a log free of WARN, BUG,
# KASAN, KFENCE, UBSAN, lockdep, RCU-stall, hung-task and kmemleak reports,
# no taint the tests did not set on purpose, lockdep still on).
#
#   tests/vm/run.sh [--flavor test|perf] [--timeout SECONDS] [--out DIR]
#                   [--membar SIZE] [--switch] [--iommu] -- COMMAND [ARG...]
#
# --iommu: an emulated Intel IOMMU (interrupt remapping, caching mode; the
# kernel gets intel_iommu=on iommu=nopt) and a second edu on the root bus
# (pcie.0, 00:18.0), the DMA client that tests/vm/guest/iommufd.sh binds to
# vfio-pci; the other devices as without it.  Without --iommu the VM has no
# IOMMU, which vfio's no-IOMMU mode (peer.py) and the benchmarks need.
#
# COMMAND runs as root in the guest, in the repository, with VM_OUT set to a
# directory shared with the host (--out).  Exit status: COMMAND's, or 124 on
# timeout, or 3 when the kernel log holds a report.
set -euo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"

flavor=test
timeout_s=900
out=
membar=16G
switch=0
iommu=0
while [ $# -gt 0 ]; do
	case $1 in
	--flavor) flavor=$2; shift 2 ;;
	--timeout) timeout_s=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--membar) membar=$2; shift 2 ;;
	--switch) switch=1; shift ;;
	--iommu) iommu=1; shift ;;
	--) shift; break ;;
	*) die "unknown option $1" ;;
	esac
done
[ $# -gt 0 ] || die "usage: run.sh [options] -- COMMAND"
[ $switch = 1 ] && [ $iommu = 1 ] && die "--switch and --iommu are two different VMs"

kdir=$(kbuild_dir "$flavor")
# vng runs virtme-run from its own venv.
export PATH=$VENV/bin:$PATH
kernel=$kdir/arch/x86/boot/bzImage
[ -f "$kernel" ] || die "no $flavor kernel at $kernel: run 'make kernel' first"
out=${out:-$(mktemp -d /tmp/vfio-dmabuf-vm.XXXXXX)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -rf "$out"/{rc,dmesg.txt,kmemleak.txt,console.log,qmp.sock,hotplug,log-allow} \
	"$out"/{tainted,debug_locks}.{before,after} "$out"/uptime.script-start
mkdir -p "$out/hotplug"
# Device nodes on the shared directory, a 9p file system with a backing
# device, for the regression case of fadvise() on the importer's node
# (cases/regressions.rs): QEMU's 9p refuses mknod from the guest, so the host
# makes one for every dynamic misc minor the guest may give the importer.
if [ "$(id -u)" = 0 ]; then
	mkdir -p "$out/misc"
	for minor in $(seq 256 511); do
		[ -e "$out/misc/10:$minor" ] || mknod "$out/misc/10:$minor" c 10 "$minor"
	done
fi

# The ivshmem-plain BAR: 1 GiB, mapped privately from a file holding the
# known pattern, so the guest's writes never reach the file.
pattern=$CACHE/ivshmem-1G.pattern
if [ ! -s "$pattern" ]; then
	note "writing the ivshmem pattern file ($pattern)"
	python3 "$REPO/tests/vm/ivshmem_pattern.py" "$pattern" $((1 << 30))
fi

# edu and ivshmem sit behind PCIe root ports, so that they can be unplugged
# through the monitor (tests/vm/hotplug_agent.py, on the guest's request).
machine=q35
[ $iommu = 1 ] && machine=q35,kernel-irqchip=split
qemu_opts=(
	-machine $machine
	# vng passes '-cpu max' under TCG and '-cpu host' under KVM; the last
	# -cpu wins, so this one decides: the mapping tests need pdpe1gb (1 GiB
	# pages), and the KVM tests AMD SVM, which -cpu max gives under TCG.
	# Without LA57: with 5-level paging, an interrupt that lands while
	# identify_cpu() has cleared the boot CPU's capabilities (LA57
	# included) makes KASAN misjudge the direct map and report a
	# wild-memory-access in handle_edge_irq() at 0.007 s, before any test
	# (seen once in this project's runs; an upstream race, not ours).
	-cpu max,la57=off
)
iommu_args=()
if [ $iommu = 1 ]; then
	# Before every PCI device of ours: QEMU gives a device its DMA address
	# space when it is created, and a device created before the IOMMU
	# would bypass it.  (vng's own virtio devices come earlier and do
	# bypass it; they do not use the DMA API without VIRTIO_F_ACCESS_PLATFORM.)
	qemu_opts+=(
		-device intel-iommu,intremap=on,caching-mode=on
		-device edu,bus=pcie.0,addr=0x18,id=client0
	)
	# no_timer_check: under TCG the boot's check that the timer ticks
	# through the IO-APIC is too quick for the emulation, and with
	# interrupt remapping on, a failed check panics ("timer doesn't work
	# through Interrupt-remapped IO-APIC") instead of trying other routes;
	# the timer works once booted.
	iommu_args=(--append intel_iommu=on --append iommu=nopt --append no_timer_check)
fi
qemu_opts+=(
	-device pcie-root-port,id=rp_edu,chassis=1,slot=1
	-device edu,bus=rp_edu,id=edu0
	-object "memory-backend-file,id=ivshmem_mem,share=off,mem-path=$pattern,size=1G"
	-qmp "unix:$out/qmp.sock,server=on,wait=off"
)
if [ $switch = 1 ]; then
	# --switch (make bench): ivshmem, pci-testdev and a second edu, the
	# peer-to-peer client of upstream vfio-pci's dma-bufs, on the downstream
	# ports of one PCIe switch, so that the kernel maps between them by bus
	# address (PCI_P2PDMA_MAP_BUS_ADDR) without an IOMMU or a host bridge
	# on its whitelist.  No hot-plug here.
	qemu_opts+=(
		-device pcie-root-port,id=rp_switch,chassis=2,slot=2
		-device x3130-upstream,id=sw_up,bus=rp_switch
		-device xio3130-downstream,id=sw_ivshmem,bus=sw_up,chassis=3,slot=1
		-device ivshmem-plain,memdev=ivshmem_mem,bus=sw_ivshmem,id=ivshmem0
		-device xio3130-downstream,id=sw_testdev,bus=sw_up,chassis=4,slot=2
		-device "pci-testdev,membar=$membar,bus=sw_testdev"
		-device xio3130-downstream,id=sw_client,bus=sw_up,chassis=5,slot=3
		-device edu,bus=sw_client,id=peer0
	)
else
	qemu_opts+=(
		-device pcie-root-port,id=rp_ivshmem,chassis=2,slot=2
		-device ivshmem-plain,memdev=ivshmem_mem,bus=rp_ivshmem,id=ivshmem0
		-device "pci-testdev,membar=$membar"
	)
fi

# KVM only when it is seen to boot this kernel on this machine; the verdict
# is kept for the machine's current boot.
accel=(--disable-kvm)
accel_name=tcg
if [ -r /dev/kvm ] && [ -w /dev/kvm ] && [ "${VFIO_DMABUF_TCG:-}" != 1 ]; then
	probe=$CACHE/kvm-probe.$(cat /proc/sys/kernel/random/boot_id)
	if [ ! -f "$probe" ]; then
		note "probing KVM"
		if timeout -k 5 60 "$VENV/bin/vng" --run "$kernel" --disable-microvm \
			--cpus 2 --memory 1G --append root=/dev/root \
			--exec true </dev/null >/dev/null 2>&1; then
			echo kvm >"$probe"
		else
			echo tcg >"$probe"
		fi
	fi
	if [ "$(cat "$probe")" = kvm ]; then
		accel=()
		accel_name=kvm
	fi
fi
echo "$accel_name" >"$out/accel"

# The guest needs neither udev nor systemd-tmpfiles: devtmpfs makes every
# node the tests open, with the kernel's own modes, the tests load their
# modules with insmod, hot-plug binds through driver_override, and nothing
# in the guest runs a systemd service.  virtme-ng-init runs
# systemd-tmpfiles (30 s under TCG) whenever /etc/systemd exists, and udev's
# coldplug and settle (60-80 s, minutes on a loaded machine) whenever it
# finds systemd-udevd, in the root it boots: the host's.  So vng runs in a
# mount namespace of its own, where an empty directory hides
# /usr/lib/systemd (and /lib/systemd, the same directory on a merged-/usr
# system) and /bin/true stands in for systemd-tmpfiles, in the guest's view
# only.  The guest script then runs on the console ("console fallback", as
# /dev/virtio-ports/ is udev's), which console.log captures; its status
# comes from $out/rc.  VFIO_DMABUF_GUEST_UDEV=1 leaves both (to compare).
launch=()
if [ "${VFIO_DMABUF_GUEST_UDEV:-}" = 1 ]; then
	note "the guest runs udev and systemd-tmpfiles (VFIO_DMABUF_GUEST_UDEV=1)"
elif [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
	empty=$out/no-udev
	mkdir -p "$empty"
	launch=(unshare --mount --propagation private -- sh -c '
		for d in /usr/lib/systemd /lib/systemd; do
			[ -d "$d" ] && ! mountpoint -q "$d" && mount --bind "$1" "$d"
		done
		[ ! -e /usr/lib/systemd/systemd-udevd ] || exit 125
		tmpfiles=$(command -v systemd-tmpfiles) && mount --bind /bin/true "$tmpfiles"
		shift; exec "$@"' sh "$empty")
elif [ -e /usr/lib/systemd/systemd-udevd ] || [ -e /lib/systemd/systemd-udevd ]; then
	echo "run.sh: not root: the guest will find the host's udevd and spend minutes in its coldplug" >&2
fi

# Guest memory: 2 GiB, or 4 GiB when the kernel has hugetlbfs, for the
# udmabuf selftest's 2 GiB of 2 MiB pages (suite.sh reserves them).
memory=2G
grep -qx CONFIG_HUGETLBFS=y "$kdir/.config" 2>/dev/null && memory=4G

note "booting $flavor kernel ($accel_name$([ $iommu = 1 ] && echo ', IOMMU')): $*"
start=$(date +%s)
python3 "$REPO/tests/vm/hotplug_agent.py" "$out/qmp.sock" "$out/hotplug" "$pattern" \
	>"$out/hotplug-agent.log" 2>&1 &
agent=$!
# A fuzz seed given to the host (VFIO_DMABUF_FUZZ_SEED) reaches the guest's
# fuzz case, to replay a run.
seed_env=
if [ -n "${VFIO_DMABUF_FUZZ_SEED:-}" ]; then
	seed_env="VFIO_DMABUF_FUZZ_SEED=$(printf '%q' "$VFIO_DMABUF_FUZZ_SEED") "
fi
set +e
# log_buf_len: the whole run's log must fit (check_log.py fails a dmesg.txt
# that lost the kernel's first line).
VM_OUT=$out timeout -k 10 "$timeout_s" "${launch[@]}" "$VENV/bin/vng" --run "$kernel" \
	"${accel[@]}" --disable-microvm --cpus 2 --memory "$memory" --verbose \
	--append root=/dev/root --append oops=panic --append panic=-1 \
	--append kmemleak=on --append log_buf_len=64M "${iommu_args[@]}" \
	--rwdir="$out" --cwd "$REPO" --qemu-opts="${qemu_opts[*]}" \
	--exec "VM_OUT=$out KDIR=$kdir $seed_env$REPO/tests/vm/guest/wrap.sh $(printf '%q ' "$@")" \
	</dev/null >"$out/console.log" 2>&1
vng_rc=$?
kill "$agent" 2>/dev/null
wait "$agent" 2>/dev/null
[ -n "${empty:-}" ] && rmdir "$empty" 2>/dev/null
set -e
echo "$(($(date +%s) - start))" >"$out/seconds"
if [ -s "$out/uptime.script-start" ]; then
	echo "run.sh: the guest script started $(cat "$out/uptime.script-start") s after boot; the run took $(cat "$out/seconds") s" >&2
fi

rc=$vng_rc
[ -f "$out/rc" ] && rc=$(cat "$out/rc")
if [ $vng_rc = 124 ] || [ $vng_rc = 137 ]; then
	echo "run.sh: the guest did not finish in ${timeout_s}s (console: $out/console.log)" >&2
	rc=124
elif [ ! -f "$out/rc" ]; then
	echo "run.sh: the guest ended without a status (vng exit $vng_rc; console: $out/console.log)" >&2
	[ "$rc" = 0 ] && rc=1
fi

if ! python3 "$REPO/tests/vm/check_log.py" --kconfig "$kdir/.config" "$out"; then
	[ "$rc" = 0 ] && rc=3
fi
exit "$rc"
