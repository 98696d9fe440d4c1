# Storage steps of the Linux rig, sourced by run.sh (bash): the child's extra modules and tools,
# the files that go into the initramfs images, and the storage checkpoints of the verdict.
#
# The child gets a synthetic SCSI controller (hv_storvsc) in front of a 64 MiB image file
# (linux.json); a second child, linux-ide.json, gets the same file behind an emulated IDE channel
# (pata_legacy). storage-child.sh exercises them, storage-host.sh prepares the file in the outer
# VM, checks it after the first child is gone and runs the second.

STORAGE_CHILD_MODULES=(hv_storvsc sd_mod pata_legacy)   # dependencies come from modinfo
STORAGE_EXPECTED_PROTOCOL=6.2                           # the newest storvsc in Linux 6.1 offers
STORAGE_DISK_SECTORS=131072                             # 64 MiB in 512-byte sectors
STORAGE_DISK_MODEL="hv rig disk"
STORAGE_IDE_MODEL="hv rig ide disk"

# e2fsprogs from the host's Debian packages (installed if missing).
storage_install_packages() {
    [ -x /sbin/mke2fs ] && [ -x /sbin/e2fsck ] && return 0
    log "Installing e2fsprogs"
    apt-get install -y -qq --no-install-recommends e2fsprogs ||
        { apt_update_once; apt-get install -y -qq --no-install-recommends e2fsprogs; }
}

# storage_assemble_child DIR: mke2fs and e2fsck with the libraries ldd lists, and the child's steps.
storage_assemble_child() {
    local dir=$1 binary library
    storage_install_packages
    for binary in /sbin/mke2fs /sbin/e2fsck; do
        install -D -m 755 "$binary" "$dir$binary"
        while read -r library; do
            mkdir -p "$dir$(dirname "$library")"
            cp -L "$library" "$dir$library"
        done < <(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
    done
    ln -sf mke2fs "$dir/sbin/mkfs.ext4"
    [ -f /etc/mke2fs.conf ] && install -D -m 644 /etc/mke2fs.conf "$dir/etc/mke2fs.conf"
    install -m 644 "$RIG_DIR/storage-child.sh" "$dir/storage-child.sh"
}

# storage_assemble_outer DIR: the outer VM's storage steps.
storage_assemble_outer() {
    install -m 644 "$RIG_DIR/storage-host.sh" "$1/rig/storage-host.sh"
    install -m 644 "$RIG_DIR/linux-ide.json" "$1/rig/linux-ide.json"
}

# ide_check NAME REGEX: the first console line of the IDE child (prefix CHILD-IDE) matching REGEX.
ide_check() {
    local match
    match=$(grep -a '^CHILD-IDE| ' "$TRANSCRIPT" | grep -E -m 1 "$2" || true)
    if [ -z "$match" ]; then report FAIL "$1" "not seen"; return 1; fi
    report PASS "$1" "${match#CHILD-IDE| }"
}

# The storage checkpoints, in the child's order, after the IC checkpoints (run.sh's check).
storage_checks() {
    echo "      storage:"
    rig_check storage-protocol "S1 storvsc negotiated $STORAGE_EXPECTED_PROTOCOL (parent's view)"
    local after=${vmbus_line:-0}
    child_check "S2 hv_storvsc bound" 'rig-child: storage: hv_storvsc bound' "$after" || true
    child_check "S3 disk: $STORAGE_DISK_SECTORS sectors, \"$STORAGE_DISK_MODEL\"" \
        "rig-child: storage: disk sd[a-z]+ sectors=$STORAGE_DISK_SECTORS model=$STORAGE_DISK_MODEL" "$LAST_LINE" || true
    child_check "S4 O_DIRECT write/read-back" 'rig-child: storage: O_DIRECT pattern write and read-back match' "$LAST_LINE" || true
    child_check "S5 discard (UNMAP) reads zero" 'rig-child: storage: discarded range reads as zeros' "$LAST_LINE" || true
    child_check "S6 mkfs.ext4, mount, write, sync, umount, fsck" 'rig-child: storage: ext4 mkfs, mount, write, sync, umount, fsck clean' "$LAST_LINE" || true
    child_check "S7 hot-added disk appears" 'rig-child: storage: hot-added disk sd[a-z]+ sectors=32768' "$LAST_LINE" || true
    child_check "S8 hot-removed disk goes" 'rig-child: storage: hot-removed disk is gone' "$LAST_LINE" || true
    rig_check storage-file "S9 host reads the pattern from the file after power-off"
    rig_check storage-ide-boot "S10 linux-ide (legacy PC platform) boots and powers off"
    ide_check "S11 pata_legacy finds the IDE disk" "rig-child: storage: ide disk sd[a-z]+ sectors=$STORAGE_DISK_SECTORS model=$STORAGE_IDE_MODEL" || true
    ide_check "S12 pattern read through IDE matches" 'rig-child: storage: pattern read through the emulated IDE disk matches' || true
}
