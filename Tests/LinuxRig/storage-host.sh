# Storage steps of the outer VM (busybox sh), sourced by outer-init.sh.
#
# Before the child starts: the 64 MiB image behind its SCSI and IDE controllers (linux.json)
# and the pattern the child writes. While it runs: answers its request for a hot-added disk and
# then removes it. After it powered off: the pattern must be in the file (what the guest wrote
# and flushed reached the host file, not just the parent's memory).

STORAGE_DISK=/tmp/rig-disk.img
STORAGE_HOT=/tmp/rig-hot.img
STORAGE_PATTERN_MIB=56          # the pattern's offset in MiB, past the 48 MiB file system

storage_pattern() { yes "hv rig storage pattern 0123456789abcdef" | head -c 1048576; }

storage_prepare() {
    rm -f $STORAGE_DISK $STORAGE_HOT
    $HV disk create $STORAGE_DISK --size 64M | sed 's/^/RIG storage| /'
    $HV disk create $STORAGE_HOT --size 16M | sed 's/^/RIG storage| /'
}

# Called while following the child: hot-adds a disk when the child asks, removes it when the
# child has seen it.
storage_follow() {
    if [ ! -f /tmp/storage.added ] && grep -q 'rig-child: storage: ready for hot-add' /tmp/linux.log 2>/dev/null; then
        touch /tmp/storage.added
        say "storage: hv partition disk add linux $STORAGE_HOT --lun 1"
        $HV partition disk add linux $STORAGE_HOT --lun 1 --runtime-dir $RT 2>&1 | sed 's/^/RIG storage| /'
    fi
    if [ ! -f /tmp/storage.removed ] && grep -q 'rig-child: storage: hot-added disk' /tmp/linux.log 2>/dev/null; then
        touch /tmp/storage.removed
        say "storage: hv partition disk remove linux 1"
        $HV partition disk remove linux 1 --runtime-dir $RT 2>&1 | sed 's/^/RIG storage| /'
    fi
}

# Whether the child finished its storage steps.
storage_done() { grep -q 'rig-child: storage: done' /tmp/linux.log 2>/dev/null; }

# The parent's view of the negotiation (a fact of the partition).
storage_check_protocol() {
    protocol=$($HV partition show linux --runtime-dir $RT 2>/dev/null | sed -n 's/^ *scsi\.[0-9a-f]*\.protocol: *//p' | head -n 1)
    if [ "$protocol" = "6.2" ]; then
        result storage-protocol PASS "the parent reports storage protocol $protocol"
    else
        result storage-protocol FAIL "the parent reports storage protocol '${protocol:-none}'"
    fi
}

# After the child is gone: the pattern is in the file.
storage_check_file() {
    storage_pattern >/tmp/storage.expected
    dd if=$STORAGE_DISK of=/tmp/storage.found bs=1048576 skip=$STORAGE_PATTERN_MIB count=1 2>/dev/null
    if cmp -s /tmp/storage.expected /tmp/storage.found; then
        result storage-file PASS "1 MiB at $STORAGE_PATTERN_MIB MiB of $STORAGE_DISK is the child's pattern"
    else
        result storage-file FAIL "the pattern is not at $STORAGE_PATTERN_MIB MiB of $STORAGE_DISK"
    fi
}

# The full-virtualization path: a second Linux child (linux-ide.json) with only the emulated IDE
# channel in front of the same file, on the legacy-PC platform; it reads the pattern through
# pata_legacy and powers itself off. Its console lines carry the prefix CHILD-IDE.
storage_ide_child() {
    started=$(uptime_s)
    sed 's/^/RIG linux-ide.json| /' /rig/linux-ide.json
    if ! out=$($HV partition create /rig/linux-ide.json --start --runtime-dir $RT 2>&1); then
        echo "$out" | sed 's/^/RIG linux-ide create| /'
        result storage-ide-boot FAIL "hv partition create linux-ide failed: $(echo "$out" | head -n 1)"
        return
    fi
    deadline=$(( $(cut -d. -f1 /proc/uptime) + LINUX_TIMEOUT / 2 ))
    current=$(state linux-ide)
    touch /tmp/linux-ide.log
    until grep -q 'rig-child: storage: ide done' /tmp/linux-ide.log || [ "${current%% *}" = stopped ] ||
          [ "${current%% *}" = crashed ] || [ "$(cut -d. -f1 /proc/uptime)" -ge "$deadline" ] || ! alive $root_pid ||
          [ -n "$(child_crash linux-ide)" ]; do
        sleep 3
        follow linux-ide CHILD-IDE
        current=$(state linux-ide)
    done
    # It powers itself off (ACPI S5 through the PM1 control block) once done.
    tries=0
    while [ "${current%% *}" != stopped ] && [ "${current%% *}" != crashed ] && [ $tries -lt 30 ]; do
        sleep 2
        follow linux-ide CHILD-IDE
        current=$(state linux-ide)
        tries=$((tries + 1))
    done
    follow linux-ide CHILD-IDE
    if grep -q 'rig-child: storage: ide done' /tmp/linux-ide.log && [ "$current" = "stopped (guest powered off)" ]; then
        result storage-ide-boot PASS "linux-ide booted, ran its steps and powered off after $(since $started) s"
    else
        result storage-ide-boot FAIL "linux-ide: state $current after $(since $started) s$(child_crash linux-ide | sed 's/^/; /')"
        $HV partition stop linux-ide --runtime-dir $RT | sed 's/^/RIG /'
    fi
    $HV partition delete linux-ide --runtime-dir $RT >/dev/null 2>&1
}
