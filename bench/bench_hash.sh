#!/usr/bin/env bash
# Hashing a context with no stat index: what the first build after a
# checkout pays to key its COPY steps. imgbuild's hidden
# `cache hash-context DIR` runs exactly the cache key's hashing
# (builder::hash_sources with an empty stat index: every file read and
# hashed, xattrs listed) and nothing else; the limit it is compared with is
# `sha256sum` of the same files, one process and two in parallel, and
# `openssl dgst -sha256` (the library imgbuild hashes with). Not a test:
# numbers depend on the host.
#
#   bench/bench_hash.sh [IMGBUILD] [SIZE_MB] [RUNS]
#
# The context (in /var/tmp): half of SIZE_MB in 4 big files, half in small
# files of 1-128 KiB, random data, in 64 directories. Page cache: warm for
# every tool (each run reads the files once untimed first), unless
# COLD=1, which drops the page cache (echo 3 > /proc/sys/vm/drop_caches,
# root) before every timed run of every tool. Best of RUNS wall time.
set -euo pipefail
IMGBUILD=$(readlink -f "${1:-$(dirname "$0")/../build/imgbuild}")
SIZE_MB=${2:-2048}
RUNS=${3:-3}
COLD=${COLD:-0}
WORK=$(mktemp -d /var/tmp/imgbuild-bench-hash-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
CTX="$WORK/ctx"
mkdir -p "$CTX"

python3 - "$CTX" "$SIZE_MB" <<'PY'
import os, random, sys
ctx, size_mb = sys.argv[1], int(sys.argv[2])
rng = random.Random(1)
half = size_mb * 1024 * 1024 // 2
chunk = 8 << 20
for i in range(4):  # big files
    left = half // 4
    with open(os.path.join(ctx, f"big{i}.bin"), "wb") as f:
        while left > 0:
            n = min(chunk, left)
            f.write(os.urandom(n))
            left -= n
left, i = half, 0
while left > 0:  # small files
    d = os.path.join(ctx, f"d{i % 64:02d}")
    os.makedirs(d, exist_ok=True)
    n = min(left, rng.randint(1024, 128 * 1024))
    with open(os.path.join(d, f"f{i}.dat"), "wb") as f:
        f.write(os.urandom(n))
    left -= n
    i += 1
PY
FILES=$(find "$CTX" -type f | wc -l)
BYTES=$(find "$CTX" -type f -printf '%s\n' | awk '{s+=$1} END {printf "%.0f", s}')
ROOT="$WORK/store"
"$IMGBUILD" --root "$ROOT" images >/dev/null  # creates the store

now() { date +%s.%N; }
prepare() {
  if [[ "$COLD" == 1 ]]; then
    sync
    echo 3 >/proc/sys/vm/drop_caches
  fi
}
best_of() {  # name, command… : best wall time of RUNS
  local name=$1; shift
  if [[ "$COLD" != 1 ]]; then
    "$@" >/dev/null 2>&1 || { echo "bench: $name failed" >&2; exit 1; }
  fi
  for _ in $(seq 1 "$RUNS"); do
    prepare
    local t0 t1
    t0=$(now)
    "$@" >/dev/null 2>&1
    t1=$(now)
    echo "$t1 - $t0" | bc -l
  done | sort -n | head -1
}
sha_one() { find "$CTX" -type f -print0 | xargs -0 sha256sum; }
sha_two() { find "$CTX" -type f -print0 | xargs -0 -P2 -n 512 sha256sum; }
ossl_one() { find "$CTX" -type f -print0 | xargs -0 openssl dgst -sha256; }

ti=$(best_of imgbuild "$IMGBUILD" --root "$ROOT" cache hash-context "$CTX")
t1=$(best_of sha256sum sha_one)
t2=$(best_of "sha256sum -P2" sha_two)
to=$(best_of openssl ossl_one)
mbs() { echo "$BYTES / 1000000 / $1" | bc -l; }
echo "context: $FILES files, $BYTES bytes; page cache $([[ $COLD == 1 ]] && echo cold || echo warm); best of $RUNS"
printf '%-34s %9s %9s %12s\n' tool seconds MB/s imgbuild/tool
for row in "imgbuild cache hash-context:$ti" "sha256sum (1 process):$t1" "sha256sum (xargs -P2):$t2" \
           "openssl dgst -sha256 (1 process):$to"; do
  name=${row%:*}; t=${row##*:}
  printf '%-34s %8.2fs %9.0f %12.2f\n' "$name" "$t" "$(mbs "$t")" "$(echo "$ti / $t" | bc -l)"
done
