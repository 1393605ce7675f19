#!/bin/busybox sh
# /init of the vfio-ts VM (tools/vm): mounts the pseudo file systems, hands QEMU's edu device
# to vfio-pci, runs the entry point (/opt/vfio-ts/run/cmd.sh), prints its output between
# markers, prints the result marker and powers off. The host decides pass/fail from the
# marker line alone.
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/shm /dev/pts /dev/hugepages
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t hugetlbfs hugetlbfs /dev/hugepages 2>/dev/null
ulimit -l unlimited 2>/dev/null

echo "VFIO-TS-GUEST: kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) cpus, $(grep HugePages_Total /proc/meminfo)"

# QEMU's edu device (1234:11e8) goes to vfio-pci.
for d in /sys/bus/pci/devices/*; do
  [ "$(cat "$d/vendor")" = 0x1234 ] && [ "$(cat "$d/device")" = 0x11e8 ] || continue
  bdf=${d##*/}
  echo vfio-pci > "$d/driver_override"
  echo "$bdf" > /sys/bus/pci/drivers_probe
  drv=$(basename "$(readlink "$d/driver")" 2>/dev/null)
  grp=$(basename "$(readlink "$d/iommu_group")" 2>/dev/null)
  echo "VFIO-TS-GUEST: edu $bdf driver=$drv iommu_group=$grp"
done
echo "VFIO-TS-GUEST: $(ls /dev/iommu /dev/vfio/vfio 2>/dev/null | tr '\n' ' ')$(ls /dev/vfio/devices 2>/dev/null | tr '\n' ' ')"

sh /opt/vfio-ts/run/cmd.sh
rc=$?

# Quiet the kernel so that its messages cannot break up the output block.
dmesg -n 1
out=/tmp/vfio-ts-output.json
if [ -s "$out" ]; then
  echo "VFIO-TS-OUTPUT-BEGIN $(wc -c < "$out")"
  gzip -c "$out" | base64
  echo "VFIO-TS-OUTPUT-END"
fi
if [ "$rc" = 0 ]; then
  echo "VFIO-TS-RESULT: PASS"
else
  echo "VFIO-TS-RESULT: FAIL $rc"
fi
sync
poweroff -f
sleep 2
reboot -f
