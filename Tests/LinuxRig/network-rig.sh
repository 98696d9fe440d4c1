# The rig's network part (sourced by run.sh; Docs/testing.md): the child gets Linux's stock
# hv_netvsc and a synthetic NIC on an internal switch "rig", whose TAP "hv-rig" (10.99.0.1) is
# the outer VM's side. The outer init's half is network-host.sh, the child's network-child.sh.

CHILD_MODULES+=(hv_netvsc)   # depends on hv_vmbus only
OUTER_MODULES+=(tun)         # the root creates the switch's TAP
RIG_CHILD_MAC=00:15:5d:99:00:02
RIG_HOTPLUG_MAC=00:15:5d:99:00:03

# ethtool for the child (to read its offload features back), with the libraries it links.
network_packages() {
    command -v ethtool >/dev/null && return 0
    log "Installing ethtool"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends ethtool ||
        { apt_update_once; apt-get install -y -qq --no-install-recommends ethtool; }
}

# network_child_files DIR: the child's script, and ethtool with its libraries and loader.
network_child_files() {
    local dir=$1 library ethtool
    install -m 755 "$RIG_DIR/network-child.sh" "$dir/network-child.sh"
    ethtool=$(command -v ethtool || true)
    [ -n "$ethtool" ] || { echo "warning: no ethtool on the host; the child cannot show its offloads"; return 0; }
    mkdir -p "$dir/usr/sbin"
    cp -L "$ethtool" "$dir/usr/sbin/ethtool"
    while read -r library; do
        mkdir -p "$dir$(dirname "$library")"
        cp -L "$library" "$dir$library"
    done < <(ldd "$ethtool" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
}

# network_outer_files DIR: the outer init's half.
network_outer_files() {
    install -m 755 "$RIG_DIR/network-host.sh" "$1/rig/network-host.sh"
}

# The network checkpoints, in order, after the child's VMBus line.
network_checks() {
    local after=$1
    rig_check net-switch "net 1 internal switch rig, TAP hv-rig"
    child_check "net 2 hv_netvsc bound (eth0)" 'rig-child: net: eth0 bound to hv_netvsc' "$after" || true
    rig_check net-nvsp "net 3 NVSP version: Linux's newest"
    child_check "net 4 eth0 has the configured MAC" "rig-child: net: eth0 address $RIG_CHILD_MAC" "$LAST_LINE" || true
    child_check "net 5 ip link set up: carrier" 'rig-child: net: eth0 carrier 1' "$LAST_LINE" || true
    child_check "net 6 offloads on (ethtool -k)" \
        'rig-child: net: offloads tx-checksumming: on .*tcp-segmentation-offload: on' "$LAST_LINE" || true
    child_check "net 7 child pings host 20/20" 'rig-child: net: ping host: 20/20' "$LAST_LINE" || true
    rig_check net-ping-child "net 8 host pings child 20/20"
    rig_check net-tcp-c2h "net 9 TCP 16 MiB child -> host, md5 equal"
    rig_check net-tcp-h2c "net 10 TCP 16 MiB host -> child, md5 equal"
    rig_check net-offload-used "net 11 checksum offload and TSO used"
    rig_check net-hotplug "net 12 hot-added NIC: eth1 pings 5/5"
    rig_check net-hotremove "net 13 hot-removed NIC: eth1 gone"
}
