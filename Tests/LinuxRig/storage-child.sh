# Storage steps of the Linux child (busybox sh), sourced by child-init.sh once the modules are
# loaded. Each step leaves a "rig-child: storage: ..." marker in the kernel log (run.sh checks
# them in order); a step that fails says why and the later ones are skipped.

STORAGE_PATTERN_MIB=56
storage_pattern() { yes "hv rig storage pattern 0123456789abcdef" | head -c 1048576; }

# storage_disk MODEL: the block device whose SCSI model is MODEL, waiting up to 60 s.
storage_disk() {
    tries=0
    while [ $tries -lt 60 ]; do
        for block in /sys/block/sd*; do
            [ -e "$block/device/model" ] || continue
            model=$(sed 's/ *$//' "$block/device/model")
            if [ "$model" = "$1" ]; then echo "${block##*/}"; return 0; fi
        done
        sleep 1
        tries=$((tries + 1))
    done
    return 1
}

storage_steps() {
    tries=0
    until ls /sys/bus/vmbus/drivers/hv_storvsc/ 2>/dev/null | grep -q -- '-'; do
        tries=$((tries + 1))
        [ $tries -lt 60 ] || { say "storage: hv_storvsc never bound"; return 1; }
        sleep 1
    done
    say "storage: hv_storvsc bound to $(ls /sys/bus/vmbus/drivers/hv_storvsc/ | grep -- '-' | head -n 1)"
    disk=$(storage_disk "hv rig disk") || { say "storage: no disk with model 'hv rig disk'"; return 1; }
    say "storage: disk $disk sectors=$(cat /sys/block/$disk/size) model=$(sed 's/ *$//' /sys/block/$disk/device/model) vendor=$(sed 's/ *$//' /sys/block/$disk/device/vendor) wc=$(cat /sys/block/$disk/queue/write_cache) discard=$(cat /sys/block/$disk/queue/discard_max_bytes)"

    storage_pattern >/tmp/pattern
    dd if=/tmp/pattern of=/dev/$disk bs=1048576 seek=$STORAGE_PATTERN_MIB count=1 oflag=direct conv=fsync 2>/dev/null &&
        dd if=/dev/$disk of=/tmp/back bs=1048576 skip=$STORAGE_PATTERN_MIB count=1 iflag=direct 2>/dev/null &&
        cmp -s /tmp/pattern /tmp/back || { say "storage: O_DIRECT pattern read back differs"; return 1; }
    say "storage: O_DIRECT pattern write and read-back match"

    # UNMAP: a discarded range reads back as zeros (LBPRZ).
    dd if=/tmp/pattern of=/dev/$disk bs=1048576 seek=50 count=1 oflag=direct 2>/dev/null
    blkdiscard -o $((50 << 20)) -l $((1 << 20)) /dev/$disk &&
        dd if=/dev/$disk of=/tmp/discarded bs=1048576 skip=50 count=1 iflag=direct 2>/dev/null &&
        head -c 1048576 /dev/zero | cmp -s - /tmp/discarded || { say "storage: discard failed or did not read as zeros"; return 1; }
    say "storage: discarded range reads as zeros"

    mkfs.ext4 -q -F -E nodiscard /dev/$disk 48M || { say "storage: mkfs.ext4 failed"; return 1; }
    mkdir -p /mnt
    mount -t ext4 /dev/$disk /mnt || { say "storage: mount failed"; return 1; }
    echo "written by the Linux child through hv_storvsc" >/mnt/hello.txt
    dd if=/dev/urandom of=/mnt/random.bin bs=65536 count=64 2>/dev/null
    sum=$(md5sum /mnt/random.bin | cut -d' ' -f1)
    sync
    umount /mnt || { say "storage: umount failed"; return 1; }
    e2fsck -f -n /dev/$disk >/tmp/fsck.log 2>&1 || { say "storage: fsck found problems: $(tail -n 3 /tmp/fsck.log | tr '\n' ' ')"; return 1; }
    mount -t ext4 -o ro /dev/$disk /mnt && [ "$(md5sum /mnt/random.bin | cut -d' ' -f1)" = "$sum" ] &&
        grep -q "hv_storvsc" /mnt/hello.txt && umount /mnt || { say "storage: the files read back differently"; return 1; }
    say "storage: ext4 mkfs, mount, write, sync, umount, fsck clean"

    # Hot-add and hot-remove: the host adds a 16 MiB disk at LUN 1 when asked, and removes it
    # once seen; ENUMERATE_BUS makes Linux rescan.
    before=$(ls /sys/block | grep -c '^sd')
    say "storage: ready for hot-add"
    tries=0
    added=""
    while [ -z "$added" ] && [ $tries -lt 120 ]; do
        for block in /sys/block/sd*; do
            [ "$(cat $block/size 2>/dev/null)" = 32768 ] && added=${block##*/}
        done
        sleep 1
        tries=$((tries + 1))
    done
    [ -n "$added" ] || { say "storage: the hot-added disk never appeared"; return 1; }
    say "storage: hot-added disk $added sectors=$(cat /sys/block/$added/size)"
    tries=0
    while [ -e /sys/block/$added ] && [ $tries -lt 120 ]; do
        sleep 1
        tries=$((tries + 1))
    done
    [ ! -e /sys/block/$added ] || { say "storage: the hot-removed disk is still there"; return 1; }
    say "storage: hot-removed disk is gone"
}

# The full-virtualization path, in a second child booted with rig.mode=ide: the same file behind
# the legacy IDE ports, which pata_legacy drives (that child's platform is the legacy PC one, so
# Linux numbers ISA IRQs and pata_legacy gets IRQ 14; hyperv-interface.md §13.4, §16).
storage_ide_steps() {
    storage_pattern >/tmp/pattern
    ide=$(storage_disk "hv rig ide disk") || {
        say "storage: pata_legacy found no IDE disk"
        # What Linux made of the legacy ports and IRQs, and pata_legacy's second try.
        grep -E '01f|03f|017|037' /proc/ioports | while read -r line; do say "storage: ioports: $line"; done
        grep -E '^ *1[45]:' /proc/interrupts | while read -r line; do say "storage: interrupts: $line"; done
        insmod /lib/modules/pata_legacy.ko 2>&1 | while read -r line; do say "storage: insmod: $line"; done
        dmesg | tail -n 12 | while read -r line; do say "storage: dmesg: $line"; done
        return 1
    }
    say "storage: ide disk $ide sectors=$(cat /sys/block/$ide/size) model=$(sed 's/ *$//' /sys/block/$ide/device/model)"
    dd if=/dev/$ide of=/tmp/ide bs=1048576 skip=$STORAGE_PATTERN_MIB count=1 iflag=direct 2>/dev/null &&
        cmp -s /tmp/pattern /tmp/ide || { say "storage: the pattern read through the IDE disk differs"; return 1; }
    say "storage: pattern read through the emulated IDE disk matches"
}

if grep -q 'rig.mode=ide' /proc/cmdline; then
    storage_ide_steps
    say "storage: ide done"
    sync
    poweroff -f
else
    storage_steps
    say "storage: done"
fi
