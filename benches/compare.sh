#!/usr/bin/env bash
# Compares Wharf with CNCF distribution (Debian's docker-registry 2.8.2) under the same load.
#
# For every workload, each round starts each server afresh with the same config (filesystem
# storage in a new temp folder, deletes enabled, no auth, error-level logs, no access log,
# in-memory blob-descriptor cache) on a free 127.0.0.1 port, seeds, measures with
# benches/loadgen.rs, reads the server's memory, CPU and read counters from /proc, and stops
# it. A round runs every workload once; servers alternate (wharf, distribution, then
# distribution, wharf, ...) so drift on this shared machine hits both, and cases compared with
# each other (a case and its TLS twin, the cache kinds) run next to each other in every round.
# Each round also measures the machine's limits: SHA-256 per core, dd with fdatasync and a bare
# sendfile of a cached file over loopback (benches/loopback_send.rs) at its start, the null
# server right before each case it bounds (pull-1, pull-16, blob-head-64, manifest-get-64).
# The table shows medians over the rounds.
# Case names carry variants: *-tls serves over http.tls (a fresh ECDSA P-256 test CA), *-redis
# uses blobdescriptor: redis (a fresh redis-server), *-nocache no blob-descriptor cache,
# handshake* pins the server to CPU 0 and the load generator to CPU 1.
# --s3 adds, after the rounds, the S3 workloads of benches/s3_compare.rs on moto: S3 requests of
# a 3-layer skopeo push and pull by operation (wharf and distribution), wharf's RSS under a push
# storm, S3 requests per catalog page.
#
#   benches/compare.sh [--quick] [--s3] [--only wharf|distribution] [--rounds N] [--cases a,b,...]
#
# Results: target/bench-results/<stamp>.{md,json} (the .md is ready to paste into README.md's
# "Benchmarks" section) and the raw <stamp>-records.jsonl (and <stamp>-s3.jsonl).
set -euo pipefail

usage() {
    sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    cat <<'EOF'
Options:
  --quick            small sizes, short runs, 1 round (a smoke run, minutes)
  --s3               also the S3 workloads on moto (full: 4 MiB layers, a storm of 32 x 100 MiB,
                     1,000 repositories; --quick: 1 MiB layers, 4 x 8 MiB, 100 repositories);
                     with --cases, only the S3 workloads run when the list is "s3"
  --only SERVER      run one server only: wharf or distribution
  --rounds N         rounds per workload (default 3, --quick 1)
  --cases LIST       comma-separated case names (see the table's first column) or workloads
Environment:
  DISTRIBUTION_BIN   default /usr/bin/docker-registry
  WHARF_BIN          default $CARGO_TARGET_DIR/release/wharf (built by this script)
  CARGO_TARGET_DIR   default <repo>/target
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

QUICK=0
S3=0
ONLY=""
ROUNDS=""
CASE_FILTER=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --s3) S3=1 ;;
        --only) ONLY=${2:?--only needs wharf or distribution}; shift ;;
        --rounds) ROUNDS=${2:?--rounds needs a number}; shift ;;
        --cases) CASE_FILTER=${2:?--cases needs a list}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "compare.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

case "$ONLY" in
    "") SERVERS=(wharf distribution) ;;
    wharf|distribution) SERVERS=("$ONLY") ;;
    *) echo "compare.sh: --only takes wharf or distribution" >&2; exit 2 ;;
esac

if [ "$QUICK" = 1 ]; then
    ROUNDS=${ROUNDS:-1}
    SIZE=4MiB CHUNK=1MiB DUR=2s SMALL_COUNT=200 REPOS=100 TAGS=100 SLOW_DUR=3s MODE=quick
    S3_LAYER_MIB=1 S3_STORM=4 S3_STORM_MIB=8 S3_REPOS=100
else
    ROUNDS=${ROUNDS:-3}
    SIZE=64MiB CHUNK=8MiB DUR=10s SMALL_COUNT=2000 REPOS=1000 TAGS=1000 SLOW_DUR=10s MODE=full
    S3_LAYER_MIB=4 S3_STORM=32 S3_STORM_MIB=100 S3_REPOS=1000
fi
case "$ROUNDS" in ''|*[!0-9]*|0) echo "compare.sh: --rounds must be a positive number" >&2; exit 2 ;; esac

# name|loadgen arguments. Names are what the table shows and what --cases selects.
ALL_CASES=(
    "push-mono-1|--workload push-mono --size $SIZE --streams 1 --duration $DUR"
    "push-mono-1-tls|--workload push-mono --size $SIZE --streams 1 --duration $DUR"
    "push-mono-8|--workload push-mono --size $SIZE --streams 8 --duration $DUR"
    "push-mono-16|--workload push-mono --size $SIZE --streams 16 --duration $DUR"
    "push-mono-16-tls|--workload push-mono --size $SIZE --streams 16 --duration $DUR"
    "push-chunked-4|--workload push-chunked --size $SIZE --chunk $CHUNK --streams 4 --duration $DUR"
    "pull-1|--workload pull --size $SIZE --blobs 4 --streams 1 --duration $DUR"
    "pull-1-tls|--workload pull --size $SIZE --blobs 4 --streams 1 --duration $DUR"
    "pull-16|--workload pull --size $SIZE --blobs 4 --streams 16 --duration $DUR"
    "pull-16-tls|--workload pull --size $SIZE --blobs 4 --streams 16 --duration $DUR"
    "range-8|--workload range --size $SIZE --blobs 4 --range-size 1MiB --streams 8 --duration $DUR"
    "manifest-get-64|--workload manifest-get --streams 64 --duration $DUR"
    "manifest-get-64-tls|--workload manifest-get --streams 64 --duration $DUR"
    "blob-head-64|--workload blob-head --streams 64 --duration $DUR"
    "blob-head-64-tls|--workload blob-head --streams 64 --duration $DUR"
    "small-push-32|--workload small-push --size 4KiB --count $SMALL_COUNT --streams 32 --duration 120s"
    "catalog-4|--workload catalog --repos $REPOS --streams 4 --duration $DUR"
    "tags-4|--workload tags --tags $TAGS --streams 4 --duration $DUR"
    "slow-uploads-200|--workload slow-uploads --streams 200 --trickle 1KiB --interval 100ms --duration $SLOW_DUR"
    "slow-patches-200|--workload slow-uploads --streams 200 --trickle 16KiB --interval 50ms --duration 1600ms"
    "blob-head-64-redis|--workload blob-head --streams 64 --duration $DUR"
    "blob-head-64-nocache|--workload blob-head --streams 64 --duration $DUR"
    "handshake-1core|--workload handshake --streams 16 --duration $DUR"
    "handshake-1core-tls|--workload handshake --streams 16 --duration $DUR"
    "handshake-resume-1core-tls|--workload handshake --tls-resume --streams 16 --duration $DUR"
)
CASES=()
for entry in "${ALL_CASES[@]}"; do
    name=${entry%%|*}
    workload=${entry#*--workload }
    workload=${workload%% *}
    if [ -z "$CASE_FILTER" ] || [[ ",$CASE_FILTER," == *",$name,"* ]] || [[ ",$CASE_FILTER," == *",$workload,"* ]]; then
        CASES+=("$entry")
    fi
done
if [ "$CASE_FILTER" = s3 ] && [ "$S3" = 1 ]; then
    CASES=()
elif [ ${#CASES[@]} = 0 ]; then
    echo "compare.sh: --cases matched nothing" >&2
    exit 2
fi

# --- processes we start, stopped by PID whatever happens -----------------------------------
PIDS=()
WORK=""
# Stops one of our children (TERM, then KILL after 5 s), reaps it and forgets its PID, so a
# PID the system hands out again later is never signalled.
stop_pid() {
    local pid=$1 kept=() p
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
    PIDS=("${kept[@]}")
}
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    [ -n "$WORK" ] && rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build ----------------------------------------------------------------------------------
echo "== building (release) ==" >&2
if [[ " ${SERVERS[*]} " == *" wharf "* ]] && [ -z "${WHARF_BIN:-}" ]; then
    cargo build --release --bin wharf >&2
fi
WHARF_BIN=${WHARF_BIN:-$CARGO_TARGET_DIR/release/wharf}
DISTRIBUTION_BIN=${DISTRIBUTION_BIN:-/usr/bin/docker-registry}
cargo bench --bench loadgen --no-run >&2
LOADGEN=$(cargo bench --bench loadgen --no-run --message-format=json 2>/dev/null |
    grep -o '"executable":"[^"]*loadgen[^"]*"' | tail -1 | sed 's/"executable":"\(.*\)"/\1/')
[ -x "$LOADGEN" ] || { echo "compare.sh: could not build benches/loadgen.rs" >&2; exit 1; }
cargo bench --bench loopback_send --no-run >&2
LOOPBACK_SEND=$(cargo bench --bench loopback_send --no-run --message-format=json 2>/dev/null |
    grep -o '"executable":"[^"]*loopback_send[^"]*"' | tail -1 | sed 's/"executable":"\(.*\)"/\1/')
S3_BENCH=""
if [ "$S3" = 1 ]; then
    command -v moto_server >/dev/null || { echo "compare.sh: --s3 needs moto_server (pip install 'moto[server]')" >&2; exit 1; }
    cargo bench --bench s3_compare --no-run >&2
    S3_BENCH=$(cargo bench --bench s3_compare --no-run --message-format=json 2>/dev/null |
        grep -o '"executable":"[^"]*s3_compare[^"]*"' | tail -1 | sed 's/"executable":"\(.*\)"/\1/')
    [ -x "$S3_BENCH" ] || { echo "compare.sh: could not build benches/s3_compare.rs" >&2; exit 1; }
fi
for server in "${SERVERS[@]}"; do
    bin=$WHARF_BIN
    [ "$server" = distribution ] && bin=$DISTRIBUTION_BIN
    [ -x "$bin" ] || { echo "compare.sh: $server binary $bin not found" >&2; exit 1; }
done

RESULTS=$CARGO_TARGET_DIR/bench-results
mkdir -p "$RESULTS"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RECORDS=$RESULTS/$STAMP-records.jsonl
: >"$RECORDS"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/wharf-bench.XXXXXX")
CLK_TCK=$(getconf CLK_TCK)

# --- /proc readings -------------------------------------------------------------------------
status_kib() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
rchar() { awk '$1 == "rchar:" { print $2 }' "/proc/$1/io" 2>/dev/null || true; }
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }' || true; }
# Resets VmHWM so that the peak covers the measurement, not the seeding before it.
reset_peak() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || true; }
# shellcheck disable=SC1003 # the backslash is deleted, not escaping anything
json_text() { tr -d '"\\' <<<"$1" | tr '\n\t' '  ' | cut -c1-300; }
or_null() { if [ -n "$1" ]; then echo "$1"; else echo null; fi; }
# The one-minute load average, which the report shows beside the figures it bends.
load1() { or_null "$(cut -d' ' -f1 /proc/loadavg 2>/dev/null)"; }
RUN_LOAD1=null

# The test CA and the servers' certificate (127.0.0.1, localhost), made once per run.
make_tls() {
    mkdir -p "$WORK/tls"
    (
        cd "$WORK/tls"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -keyout ca.key -out ca.pem -subj /CN=wharf-bench-ca \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout server.key -out server.csr -subj /CN=127.0.0.1
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile server.ext -out server.pem
    ) >"$WORK/tls-openssl.log" 2>&1 || {
        echo "compare.sh: openssl failed:" >&2
        cat "$WORK/tls-openssl.log" >&2
        exit 1
    }
}

write_config() { # dir port case [redis-port]
    local cache="  cache:
    blobdescriptor: inmemory" tls="" redis=""
    case "$3" in
        *-nocache) cache="" ;;
        *-redis)
            cache="  cache:
    blobdescriptor: redis"
            redis="redis:
  addr: 127.0.0.1:$4" ;;
    esac
    case "$3" in
        *-tls) tls="  tls:
    certificate: $WORK/tls/server.pem
    key: $WORK/tls/server.key" ;;
    esac
    cat >"$1/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $1/data
  delete:
    enabled: true
$cache
http:
  addr: 127.0.0.1:$2
  secret: compare-sh-bench-secret
$tls
$redis
EOF
}

SERVER_PID=""
start_server() { # server dir [command prefix, e.g. taskset -c 0]
    local bin=$WHARF_BIN unset_env=() var
    [ "$1" = distribution ] && bin=$DISTRIBUTION_BIN
    for var in $(compgen -e); do
        case "$var" in REGISTRY_*|AWS_*) unset_env+=(-u "$var") ;; esac
    done
    "${@:3}" env "${unset_env[@]}" "$bin" serve "$2/config.yml" >"$2/server.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
}

REDIS_PID=""
start_redis() { # dir port
    redis-server --port "$2" --bind 127.0.0.1 --save "" --appendonly no --dir "$1" \
        >"$1/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    local _
    for _ in $(seq 50); do
        redis-cli -p "$2" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

wait_ready() { # url [tls arguments]
    local _
    for _ in $(seq 60); do
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        "$LOADGEN" --url "$1" "${@:2}" --wait-ready --duration 0.25s && return 0
    done
    return 1
}

# Appends one record; $6 is the loadgen result line or "null".
record() { # server round case failure extra-json result
    local failure=null
    [ -n "$4" ] && failure="\"$(json_text "$4")\""
    printf '{"server":"%s","round":%s,"case":"%s","load1":%s,"failure":%s%s,"result":%s}\n' \
        "$1" "$2" "$3" "$RUN_LOAD1" "$failure" "$5" "$6" >>"$RECORDS"
}

run_one() { # server round "name|args"
    local server=$1 round=$2 name=${3%%|*} args=${3#*|}
    local dir port url out err rc base peak hwm rss r0 r1 c0 c1 cpu extra lg redis_port=""
    local tls_args=() server_pin=() client_pin=()
    dir=$(mktemp -d "$WORK/$name-$server.XXXXXX")
    RUN_LOAD1=$(load1)
    port=$("$LOADGEN" --free-port)
    url=http://127.0.0.1:$port
    case "$name" in *-tls) url=https://127.0.0.1:$port tls_args=(--cacert "$WORK/tls/ca.pem") ;; esac
    case "$name" in handshake*) server_pin=(taskset -c 0) client_pin=(taskset -c 1) ;; esac
    REDIS_PID=""
    case "$name" in
        *-redis)
            redis_port=$("$LOADGEN" --free-port)
            if ! start_redis "$dir" "$redis_port"; then
                record "$server" "$round" "$name" "redis-server did not start" "" null
                stop_pid "$REDIS_PID"
                rm -rf "$dir"
                return
            fi ;;
    esac
    write_config "$dir" "$port" "$name" "$redis_port"
    start_server "$server" "$dir" "${server_pin[@]}"
    echo "-- $name  round $round  $server (pid $SERVER_PID, port $port)" >&2
    if ! wait_ready "$url" "${tls_args[@]}"; then
        echo "   $server did not become ready; its log ends:" >&2
        tail -5 "$dir/server.log" | sed 's/^/   | /' >&2
        record "$server" "$round" "$name" "server did not become ready" "" null
        stop_pid "$SERVER_PID"
        [ -z "$REDIS_PID" ] || stop_pid "$REDIS_PID"
        rm -rf "$dir"
        return
    fi
    out=$dir/loadgen.out
    err=$dir/loadgen.err
    # Seeding first (a no-op for workloads that read nothing), so readings cover the measurement.
    # shellcheck disable=SC2086 # args are words by design
    if ! timeout 900 "$LOADGEN" --url "$url" "${tls_args[@]}" $args --seed-only >"$out" 2>"$err"; then
        echo "   seeding failed: $(tail -1 "$err")" >&2
        record "$server" "$round" "$name" "seeding failed: $(tail -1 "$err")" "" null
        stop_pid "$SERVER_PID"
        [ -z "$REDIS_PID" ] || stop_pid "$REDIS_PID"
        rm -rf "$dir"
        return
    fi
    sleep 0.2
    base=$(status_kib "$SERVER_PID" VmRSS)
    r0=$(rchar "$SERVER_PID")
    c0=$(cpu_ticks "$SERVER_PID")
    reset_peak "$SERVER_PID"
    peak=$base
    # shellcheck disable=SC2086
    "${client_pin[@]}" timeout 900 "$LOADGEN" --url "$url" "${tls_args[@]}" $args --no-seed >"$out" 2>"$err" &
    lg=$!
    PIDS+=("$lg")
    while kill -0 "$lg" 2>/dev/null; do
        rss=$(status_kib "$SERVER_PID" VmRSS)
        [ -n "$rss" ] && [ "$rss" -gt "${peak:-0}" ] && peak=$rss
        sleep 0.2
    done
    rc=0
    wait "$lg" || rc=$?
    stop_pid "$lg"
    r1=$(rchar "$SERVER_PID")
    c1=$(cpu_ticks "$SERVER_PID")
    hwm=$(status_kib "$SERVER_PID" VmHWM)
    cpu=""
    [ -n "$c0" ] && [ -n "$c1" ] && cpu=$(awk -v a="$c0" -v b="$c1" -v t="$CLK_TCK" 'BEGIN { print (b - a) / t }')
    extra=""
    [ -n "$r0" ] && [ -n "$r1" ] && extra=$((r1 - r0))
    extra=$(printf ',"peak_rss_kib":%s,"base_rss_kib":%s,"during_rss_kib":%s,"server_read_bytes":%s,"server_cpu_s":%s' \
        "$(or_null "$hwm")" "$(or_null "$base")" "$(or_null "$peak")" "$(or_null "$extra")" "$(or_null "$cpu")")
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "   $server exited during the run; its log ends:" >&2
        tail -5 "$dir/server.log" | sed 's/^/   | /' >&2
        record "$server" "$round" "$name" "server exited during the run" "$extra" null
    elif [ "$rc" != 0 ] || ! grep -q '^{' "$out"; then
        echo "   loadgen failed ($rc): $(tail -1 "$err")" >&2
        record "$server" "$round" "$name" "loadgen failed: $(tail -1 "$err")" "$extra" null
    else
        echo "   $(grep -o '"figure":[^,]*,' "$out" | tr -d '",') $(grep -o '"unit":"[^"]*"' "$out" | cut -d'"' -f4)  errors $(grep -o '"errors":[0-9]*' "$out" | cut -d: -f2)  peak RSS ${hwm:-?} KiB" >&2
        record "$server" "$round" "$name" "" "$extra" "$(head -1 "$out")"
    fi
    stop_pid "$SERVER_PID"
    [ -z "$REDIS_PID" ] || stop_pid "$REDIS_PID"
    rm -rf "$dir"
}

# --- the machine's limits, measured in every round ------------------------------------------
# Appends a "limit" record: a figure the case cannot beat on this machine.
limit_record() { # round case figure unit
    [ -n "$3" ] || return 0
    printf '{"server":"limit","round":%s,"case":"%s","load1":%s,"failure":null,"result":{"figure":%s,"unit":"%s"}}\n' \
        "$1" "$2" "$(load1)" "$3" "$4" >>"$RECORDS"
    echo "   limit $2: $3 $4" >&2
}

null_server_case() { # round port case loadgen-arguments...
    local out
    out=$(timeout 300 "$LOADGEN" --url "http://127.0.0.1:$2" "${@:4}" --no-seed 2>/dev/null | head -1) || true
    limit_record "$1" "$3" "$(grep -o '"figure":[0-9.e+-]*' <<<"$out" | cut -d: -f2)" \
        "$(grep -o '"unit":"[^"]*"' <<<"$out" | cut -d'"' -f4)"
}

# The null server: hyper answering from memory, no work (see benches/loadgen/null_server.rs),
# under a case's own load. Measured right before the case in each round, so the ceiling and the
# servers' figures see the same moment of a shared machine.
null_server_limit() { # round "name|args"
    local round=$1 name=${2%%|*} args=${2#*|} size=$SIZE port pid
    case "$name" in
        pull-1 | pull-16 | blob-head-64) ;;
        manifest-get-64) size=1KiB ;;
        *) return 0 ;;
    esac
    port=$("$LOADGEN" --free-port)
    "$LOADGEN" --null-server "$port" --size "$size" >/dev/null 2>&1 &
    pid=$!
    PIDS+=("$pid")
    "$LOADGEN" --url "http://127.0.0.1:$port" --wait-ready --duration 5s || true
    # shellcheck disable=SC2086 # args are words by design
    null_server_case "$round" "$port" "$name" $args
    stop_pid "$pid"
}

measure_limits() { # round
    local round=$1 mbps
    echo "-- machine limits  round $round" >&2
    # SHA-256 of 1 MiB buffers on one core (what a push's digest costs).
    mbps=$(openssl speed -seconds 2 -bytes 1048576 sha256 2>/dev/null |
        awk '$1 == "sha256" { v = $NF; sub(/k$/, "", v); printf "%.0f", v * 1000 / 1e6 }')
    limit_record "$round" sha256-per-core "$mbps" MB/s
    # The disk: 1 GiB written and fdatasync'ed, as a push's fsync makes it durable.
    mbps=$(LC_ALL=C dd if=/dev/zero of="$WORK/dd.bin" bs=1M count=1024 conv=fdatasync 2>&1 |
        awk '/copied/ { for (i = 1; i < NF; i++) if ($i == "copied,") { printf "%.0f", $1 / $(i + 1) / 1e6 } }')
    rm -f "$WORK/dd.bin"
    limit_record "$round" dd-fdatasync "$mbps" MB/s
    # A cached 64 MiB file sent over loopback with sendfile and nothing else (benches/loopback_send.rs):
    # the ceiling of a plain-HTTP pull's kernel path, beside the null server's write from memory.
    if [ -x "${LOOPBACK_SEND:-}" ]; then
        local line
        line=$(timeout 120 "$LOOPBACK_SEND" --run --methods sendfile --seconds 3 --rounds 1 --json 2>/dev/null | head -1) || true
        limit_record "$round" sendfile-loopback "$(grep -o '"mb_per_s":[0-9.]*' <<<"$line" | cut -d: -f2)" MB/s
        limit_record "$round" sendfile-loopback-cpu "$(grep -o '"cpu_s_per_gb":[0-9.]*' <<<"$line" | cut -d: -f2)" CPU-s/GB
    fi
}

S3_NOTE=""
[ "$S3" = 0 ] || S3_NOTE=" --s3"
echo "== $MODE$S3_NOTE run: ${#CASES[@]} workloads x ${ROUNDS} rounds x ${SERVERS[*]} ==" >&2
read -r STARTED_DAY STARTED < <(date -u "+%Y-%m-%d %H:%M")
for entry in "${CASES[@]}"; do
    if [[ ${entry%%|*} == *-tls ]]; then
        make_tls
        break
    fi
done
if [ ${#CASES[@]} -gt 0 ]; then
    for round in $(seq "$ROUNDS"); do
        measure_limits "$round"
        for entry in "${CASES[@]}"; do
            order=("${SERVERS[@]}")
            # Alternate who goes first, so slow drift on a shared machine does not favour one.
            if [ ${#SERVERS[@]} = 2 ] && [ $((round % 2)) = 0 ]; then order=("${SERVERS[1]}" "${SERVERS[0]}"); fi
            null_server_limit "$round" "$entry"
            for server in "${order[@]}"; do
                run_one "$server" "$round" "$entry"
            done
        done
    done
fi

# --- S3 on moto (benches/s3_compare.rs), after the rounds --------------------------------------
S3_ARGS=()
if [ "$S3" = 1 ]; then
    S3_RECORDS=$RESULTS/$STAMP-s3.jsonl
    : >"$S3_RECORDS"
    S3_ARGS=(--s3 "$S3_RECORDS")
    # s3_compare starts its own moto_server and registries (tests/support), stops them itself,
    # and runs the wharf binary named by WHARF_TEST_SERVER.
    s3_run() { # description, s3_compare arguments...
        echo "-- S3: $1" >&2
        if ! WHARF_TEST_SERVER=$WHARF_BIN timeout 3600 "$S3_BENCH" "${@:2}" --json "$S3_RECORDS" \
            >"$WORK/s3.out" 2>"$WORK/s3.err"; then
            echo "   s3_compare failed: $(tail -3 "$WORK/s3.err")" >&2
        fi
    }
    s3_run "3-layer push and pull, $ROUNDS round(s)" --run --rounds "$ROUNDS" --layer-mib "$S3_LAYER_MIB"
    s3_run "push storm, $S3_STORM x $S3_STORM_MIB MiB" --storm "$S3_STORM" --storm-mib "$S3_STORM_MIB"
    s3_run "catalog, $S3_REPOS repositories" --catalog "$S3_REPOS"
fi

read -r ENDED_DAY ENDED < <(date -u "+%Y-%m-%d %H:%M")
# A run that crosses midnight names both days.
[ "$ENDED_DAY" = "$STARTED_DAY" ] || ENDED="$ENDED_DAY $ENDED"
TITLE="Wharf vs distribution ($("$DISTRIBUTION_BIN" --version 2>/dev/null | awk '{print $NF}'))"
TITLE="$TITLE — \`benches/compare.sh\` $MODE$S3_NOTE, $ROUNDS round(s), $STARTED_DAY $STARTED–$ENDED UTC, wharf $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, $(awk '{ printf "%.0f GiB", $2 / 1048576; exit }' /proc/meminfo) RAM"
"$LOADGEN" --report "$RECORDS" "${S3_ARGS[@]}" --title "$TITLE" \
    --out-md "$RESULTS/$STAMP.md" --out-json "$RESULTS/$STAMP.json"
cp "$RESULTS/$STAMP.md" "$RESULTS/latest.md"
cp "$RESULTS/$STAMP.json" "$RESULTS/latest.json"
echo >&2
echo "results: $RESULTS/$STAMP.md, $RESULTS/$STAMP.json, records $RECORDS" >&2
