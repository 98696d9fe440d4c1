#!/bin/sh
# PID 1 of the Linux child partition (busybox sh). run.sh puts it in the child's initrd as /init.
#
# Loads the stock Hyper-V drivers (hv_vmbus, then hv_utils) and waits. When the shutdown
# integration service asks for a power-off, hv_utils runs /sbin/poweroff (busybox), which signals
# PID 1 with SIGUSR2 (SIGTERM for reboot): the trap below powers the partition off. The script
# must never exit: PID 1 exiting panics the kernel.

export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

uptime_s() { cut -d' ' -f1 /proc/uptime; }
# Markers go through the kernel log: printk writes the serial port by polling, so they still show
# if the UART's interrupts misbehave, and they get printk timestamps like the checkpoints.
say() { echo "rig-child: $*" >/dev/kmsg 2>/dev/null || echo "rig-child: $*"; }
power_off() {
    say "$1 requested at $(uptime_s) s; powering off"
    sync
    poweroff -f
}
trap 'power_off poweroff' USR2
trap 'power_off halt' USR1
trap 'power_off reboot' TERM

say "init started at $(uptime_s) s"
loaded="" failed=""
for module in $(cat /lib/modules/order); do
    if insmod /lib/modules/$module.ko; then loaded="$loaded $module"; else failed="$failed $module"; fi
done
say "modules loaded:${loaded:- none}; failed:${failed:- none}; at $(uptime_s) s"

# List the VMBus devices once the offers have had time to arrive.
sleep 5
for device in /sys/bus/vmbus/devices/*; do
    [ -e "$device/class_id" ] && say "vmbus device $(basename "$device") class $(cat "$device/class_id")"
done

# The disks (storage-child.sh).
[ -f /storage-child.sh ] && . /storage-child.sh
# The network checks (network-child.sh), in the background so the traps above stay responsive.
[ -f /network-child.sh ] && ( . /network-child.sh ) &

while true; do sleep 1; done
