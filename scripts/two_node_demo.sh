#!/usr/bin/env bash
# Two-node Ray cluster on this machine, then the VAE + GMM + MM pipeline on it.
#
#   scripts/two_node_demo.sh [OUT_DIR]
#
# Starts a head node (2 CPUs, custom resource head_role) and a second node
# (1 CPU, custom resource vae_node: it stands in for the GPU machine of a real
# cluster), runs scripts/two_node_driver.py against them -- the VAE actor must
# land on the second node, the GMM and MM on the head, and the class labels
# must equal a single-process run with the same seed -- and stops both nodes.
#
# Only the processes this script starts are stopped (never `ray stop`, which
# would kill every Ray on the machine).  The cluster gets its own temp dir and
# its own authentication token, so it does not disturb another Ray running here.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python}
OUT=${1:-$(mktemp -d "${TMPDIR:-/tmp}/serket-two-node-out.XXXXXX")}
# Short path: Ray's unix sockets live under it and are limited to 107 bytes.
RAY_TMP=$(mktemp -d /tmp/s2n.XXXXXX)

export RAY_AUTH_MODE=token                      # this cluster's own token, not ~/.ray/auth_token
export RAY_AUTH_TOKEN_PATH="$RAY_TMP/auth_token"
export RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0  # stop at once on SIGTERM (no drain wait)
export RAY_USAGE_STATS_ENABLED=0
(umask 077 && "$PYTHON" -c 'import secrets; print(secrets.token_hex(32))' > "$RAY_TMP/auth_token")

free_ports() {  # N distinct free TCP ports
    "$PYTHON" - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}
# Every port a node would otherwise take at a fixed default (6379, 10001, 8265,
# 52365) is a free one, so another Ray on this machine is no obstacle.
read -r PORT CLIENT_PORT DASHBOARD_PORT HEAD_AGENT_PORT WORKER_AGENT_PORT <<< "$(free_ports 5)"

HEAD_PID=""
WORKER_PID=""
DRIVER_PID=""

descendants() {  # every process below the given pids
    local pid child
    for pid in "$@"; do
        for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do
            echo "$child"
            descendants "$child"
        done
    done
}

cleanup() {
    local status=$? pids=() i alive
    trap - EXIT INT TERM
    if [[ -n $DRIVER_PID ]] && kill -0 "$DRIVER_PID" 2>/dev/null; then
        kill -TERM "$DRIVER_PID" 2>/dev/null || true
        sleep 1
        kill -KILL "$DRIVER_PID" 2>/dev/null || true
    fi
    for i in $HEAD_PID $WORKER_PID; do pids+=("$i"); done
    if ((${#pids[@]})); then
        # `ray start --block` stops its node's processes on SIGTERM; anything
        # still alive a few seconds later gets SIGKILL, by pid.
        mapfile -t all < <(descendants "${pids[@]}")
        kill -TERM "${pids[@]}" 2>/dev/null || true
        for _ in $(seq 30); do
            alive=0
            for i in "${pids[@]}"; do kill -0 "$i" 2>/dev/null && alive=1; done
            ((alive)) || break
            sleep 0.5
        done
        for i in "${pids[@]}" "${all[@]}"; do
            kill -KILL "$i" 2>/dev/null || true
        done
        wait 2>/dev/null || true
    fi
    if ((status != 0)); then
        echo "two_node_demo: failed (exit $status); Ray logs: $RAY_TMP" >&2
    else
        rm -rf "$RAY_TMP"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_started() {  # wait until a `ray start` log says the node is up
    local log=$1 pid=$2
    for _ in $(seq 240); do
        grep -q "Ray runtime started" "$log" 2>/dev/null && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "two_node_demo: ray start exited early:" >&2
            cat "$log" >&2
            return 1
        fi
        sleep 0.5
    done
    echo "two_node_demo: node did not start within 120 s:" >&2
    cat "$log" >&2
    return 1
}

echo "head:   127.0.0.1:$PORT  (temp dir $RAY_TMP)"
ray start --head --node-ip-address=127.0.0.1 --port="$PORT" --num-cpus=2 --num-gpus=0 \
    --resources='{"head_role": 1}' --temp-dir="$RAY_TMP" --include-dashboard=false \
    --ray-client-server-port="$CLIENT_PORT" --dashboard-port="$DASHBOARD_PORT" \
    --dashboard-agent-listen-port="$HEAD_AGENT_PORT" \
    --disable-usage-stats --block > "$RAY_TMP/head.log" 2>&1 &
HEAD_PID=$!
wait_started "$RAY_TMP/head.log" "$HEAD_PID"

echo "second: vae_node (stands in for the GPU node)"
ray start --address="127.0.0.1:$PORT" --node-ip-address=127.0.0.1 --num-cpus=1 --num-gpus=0 \
    --resources='{"vae_node": 1}' --temp-dir="$RAY_TMP" \
    --dashboard-agent-listen-port="$WORKER_AGENT_PORT" \
    --disable-usage-stats --block > "$RAY_TMP/worker.log" 2>&1 &
WORKER_PID=$!
wait_started "$RAY_TMP/worker.log" "$WORKER_PID"

echo "running the pipeline; outputs in $OUT"
# In the background and waited for, so that a signal runs the cleanup at once.
"$PYTHON" "$ROOT/scripts/two_node_driver.py" --address "127.0.0.1:$PORT" --out "$OUT" &
DRIVER_PID=$!
wait "$DRIVER_PID"
