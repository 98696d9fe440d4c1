# Rig step, sourced by outer-init.sh once the Linux child has reached its IC checkpoints:
# the parent partition is killed with SIGKILL under the running child and started again. The
# new parent restores the child's VMBus state from the root and resumes its channels; hv_utils
# answers the new parent's NEGOTIATE on each open channel (printing "Heartbeat IC version"
# again) and its heartbeats resume. The shutdown step that follows then goes through the new
# parent. (Docs/architecture.md, "A parent that restarts".)
#
# The host pings the child every 10 ms across the kill, so the child's NIC has sends in flight
# when its parent dies. The NIC cannot carry on (its buffers and RNDIS state died with the
# parent): its channels are rescinded and served by a withdrawal session that completes those
# sends, without which hv_netvsc waits for them forever and holds up the shutdown below.
#
# rig-result: linux-parent-restart|6b parent SIGKILL + restart -> heartbeat back

# connections_seen: how many times the root logged a parent connecting.
connections_seen() { grep -c 'parent partition connected' $RT/root.log 2>/dev/null || echo 0; }
# heartbeat_seen: the child's heartbeat.seen fact (when its last heartbeat answer arrived).
heartbeat_seen() { $HV partition show linux --runtime-dir $RT 2>/dev/null | sed -n 's/^heartbeat\.seen: *//p'; }
# negotiations: how many times the child printed its heartbeat IC version.
negotiations() { grep -c 'Heartbeat IC version' /tmp/linux.log 2>/dev/null || echo 0; }

follow linux CHILD
restart_started=$(uptime_s)
beat_before=$(heartbeat_seen)
negotiated_before=$(negotiations)
connected_before=$(connections_seen)
ping -q -i 0.01 -s 1000 $NET_CHILD >/dev/null 2>&1 &
pinger=$!
sleep 2
say "linux: killing the parent partition (pid $parent_pid) with SIGKILL, the host pinging the child; last heartbeat $beat_before"
kill -9 $parent_pid
while alive $parent_pid; do sleep 1; done
$HV parent --runtime-dir $RT >>$RT/parent.log 2>&1 &
parent_pid=$!
tries=0
until [ "$(connections_seen)" -gt "$connected_before" ]; do
    tries=$((tries + 1))
    if [ $tries -ge 120 ] || ! alive $parent_pid; then break; fi
    sleep 1
done
if [ "$(connections_seen)" -le "$connected_before" ]; then
    kill $pinger 2>/dev/null
    result linux-parent-restart FAIL "the new parent did not connect to the root"
else
    say "linux: a new parent (pid $parent_pid) connected after $(since $restart_started) s"
    deadline=$(( $(cut -d. -f1 /proc/uptime) + 180 ))
    verdict=""
    while [ -z "$verdict" ]; do
        sleep 2
        follow linux CHILD
        beat=$(heartbeat_seen)
        if [ -n "$beat" ] && [ "$beat" != "$beat_before" ] && [ "$(negotiations)" -gt "$negotiated_before" ]; then
            verdict=PASS
        elif [ "$(cut -d. -f1 /proc/uptime)" -ge "$deadline" ] || [ -n "$(child_crash linux)" ]; then
            verdict=FAIL
        fi
    done
    kill $pinger 2>/dev/null
    $HV partition show linux --runtime-dir $RT | sed 's/^/RIG show| /'
    # The old NIC's channels, withdrawn: the sends in flight their sessions completed (the facts
    # appear once the guest has closed them).
    withdrawn=$($HV partition show linux --runtime-dir $RT 2>/dev/null |
                sed -n 's/^nic\.[0-9a-f:]*\.withdrawn_sends\.[0-9]*: *//p' | awk '{ n += $1; c++ } END { if (c) print n " sends in flight completed on " c " withdrawn NIC channel(s)" }')
    if [ "$verdict" = PASS ]; then
        result linux-parent-restart PASS "heartbeat back $(since $restart_started) s after the kill (renegotiated; last answer $beat)${withdrawn:+; $withdrawn}"
    else
        root_threads
        result linux-parent-restart FAIL "no heartbeat renegotiated within 180 s of the restart (last answer $(heartbeat_seen))$(child_crash linux | sed 's/^/; /')"
    fi
fi
