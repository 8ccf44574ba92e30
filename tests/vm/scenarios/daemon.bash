# shellcheck shell=bash
# The node daemon (dpdk-cni-node) and the fake kubelet (the kubelet-sim
# example of node/) for a scenario that drives both: `load daemon` after
# `load helpers`.  Set before calling anything here:
#
#   WORK      the scenario's scratch directory (created by daemon_stage)
#   KDIR      the kubelet's device-plugins directory the two meet in
#   RESOURCE  the extended resource kubelet-sim waits for
#
# The daemon outlives the test that starts it: a wrapper subshell waits for
# it and writes its exit status to $WORK/daemon.rc; its stderr is
# $WORK/daemon.log.  kubelet-sim NAME prints its JSON lines (one per RPC) to
# $WORK/NAME.out and its messages to $WORK/NAME.err.
#
# Binaries: <repo>/target/debug/dpdk-cni-node and
# <repo>/target/debug/examples/kubelet-sim (cargo build -p dpdk-cni-node
# --bins --examples), or DPDK_CNI_NODE_BIN / KUBELET_SIM_BIN.

SIM_PID=""

# daemon_stage: copy both binaries to tmpfs and export NODE and SIM.
daemon_stage() {
    local repo=${DPDK_CNI_REPO:-$VM_LIB_DIR/../..} node_src sim_src
    node_src=${DPDK_CNI_NODE_BIN:-$repo/target/debug/dpdk-cni-node}
    sim_src=${KUBELET_SIM_BIN:-$repo/target/debug/examples/kubelet-sim}
    rm -rf "$WORK"
    mkdir -p "$WORK"
    [ -x "$node_src" ] || fail "no daemon binary at $node_src (cargo build -p dpdk-cni-node --bins --examples)"
    [ -x "$sim_src" ] || fail "no kubelet-sim at $sim_src (cargo build -p dpdk-cni-node --bins --examples)"
    NODE=$(stage_bin "$node_src")
    SIM=$(stage_bin "$sim_src")
    export NODE SIM
}

_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
_dead() { ! _alive "$1"; }
daemon_pid() { cat "$WORK/daemon.pid" 2>/dev/null || true; }

# daemon_start CONFIG: `dpdk-cni-node run` on CONFIG, the kubelet in $KDIR,
# the plugin's state directory, no Node annotations; in the background.
daemon_start() {
    log "starting dpdk-cni-node run --config $1 --kubelet-dir $KDIR --state-dir $CNI_STATE_DIR --no-annotate"
    (
        "$NODE" run --config "$1" --kubelet-dir "$KDIR" --state-dir "$CNI_STATE_DIR" --no-annotate \
            < /dev/null 2> "$WORK/daemon.log" &
        echo $! > "$WORK/daemon.pid"
        rc=0
        wait $! || rc=$?
        echo "$rc" > "$WORK/daemon.rc"
    ) > /dev/null 3>&- &
    wait_for 5 "the daemon's pid file" test -s "$WORK/daemon.pid"
}

# daemon_stop: SIGTERM; waits for it to exit and fails unless it exited 0.
daemon_stop() {
    local pid
    pid=$(daemon_pid)
    log "SIGTERM to the daemon (pid $pid)"
    kill -TERM "$pid"
    wait_for 10 "the daemon to stop" _dead "$pid"
    wait_for 5 "the daemon's exit status" test -s "$WORK/daemon.rc"
    [ "$(< "$WORK/daemon.rc")" = 0 ] || fail "the daemon exited with status $(< "$WORK/daemon.rc")"
}

# daemon_log_ends_cleanly: from "stopping" on, the daemon's log holds only
# the removal of its pools' device-info files (devinfo/dp/, written at
# Allocate), and nowhere a warning or an error.
daemon_log_ends_cleanly() {
    local log_file=$WORK/daemon.log after
    after=$(sed -n '/dpdk-cni-node: stopping$/,$p' "$log_file")
    assert_regex "$after" "stopping"
    assert_regex "$after" "removed [1-9][0-9]* device-info files from /var/run/k8s.cni.cncf.io/devinfo/dp"
    refute grep -vE 'dpdk-cni-node: (stopping|[^ ]+: removed [0-9]+ device-info files from )' <<< "$after"
    grep -E ' (warn|error) ' "$log_file" | sed 's/^/  daemon: /' || true
    assert_equal "$(grep -cE ' (warn|error) ' "$log_file" || true)" 0
}

# kubelet_sim NAME ARGS...: start the fake kubelet in the background on
# $KDIR (it removes stale sockets and listens on kubelet.sock).
kubelet_sim() {
    local name=$1
    shift
    rm -f "$WORK/$name.out" "$WORK/$name.err"
    "$SIM" --dir "$KDIR" --resource "$RESOURCE" --timeout 60 "$@" \
        > "$WORK/$name.out" 2> "$WORK/$name.err" 3>&- &
    SIM_PID=$!
    echo "$SIM_PID" > "$WORK/$name.pid"
    # Its message, not the socket: a quick run may be over (and the socket
    # gone) before the next look.
    wait_for 30 "kubelet-sim $name to listen on $KDIR/kubelet.sock" \
        grep -q '^kubelet-sim: serving Registration' "$WORK/$name.err"
    log "kubelet-sim $name (pid $SIM_PID) listening on $KDIR/kubelet.sock: $*"
}

# kubelet_sim_wait NAME: wait for the fake kubelet to finish; fail unless it
# exited 0, or as soon as the daemon dies.
_sim_done_or_daemon_dead() { _dead "$SIM_PID" || _dead "$(daemon_pid)"; }
kubelet_sim_wait() {
    local rc=0
    wait_for 70 "kubelet-sim $1 to finish" _sim_done_or_daemon_dead
    if _dead "$(daemon_pid)"; then
        wait_for 5 "the daemon's exit status" test -s "$WORK/daemon.rc"
        fail "the daemon exited (status $(< "$WORK/daemon.rc")) while kubelet-sim $1 waited for it"
    fi
    wait "$SIM_PID" || rc=$?
    SIM_PID=""
    [ "$rc" = 0 ] || fail "kubelet-sim $1 exited with status $rc: $(cat "$WORK/$1.err")"
    log "kubelet-sim $1 finished (exit 0): $(grep -c . "$WORK/$1.out") JSON lines"
}

# rpc NAME RPC [JQ_ARGS...] [JQ_FILTER]: the last line kubelet-sim NAME
# printed for RPC, through JQ_FILTER (raw output); fails if there is none.
rpc() {
    local name=$1 r=$2
    shift 2
    [ $# -gt 0 ] || set -- .
    local filter=${!#}
    grep -q "\"rpc\":\"$r\"" "$WORK/$name.out" ||
        fail "kubelet-sim $name printed no $r line: $(cat "$WORK/$name.out")"
    jq -rn --arg r "$r" "${@:1:$#-1}" "[inputs | select(.rpc == \$r)] | last | ($filter)" "$WORK/$name.out"
}

# daemon_show_logs: the end of the daemon's and kubelet-sim's logs (for a
# failed test).
daemon_show_logs() {
    local f
    for f in "$WORK/daemon.log" "$WORK"/*.err; do
        [ -s "$f" ] || continue
        echo "---- $f (last 20 lines)"
        tail -n 20 "$f"
    done
}

# daemon_kill_all: SIGKILL the daemon and every kubelet-sim still running
# (teardown_file).
daemon_kill_all() {
    local f pid
    for f in "$WORK/daemon.pid" "$WORK"/sim*.pid; do
        [ -e "$f" ] || continue
        pid=$(< "$f")
        if _alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
}
