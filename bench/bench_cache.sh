#!/usr/bin/env bash
# Fully cached rebuilds: the same Dockerfile rebuilt with nothing changed by
# imgbuild, by Docker's classic builder (DOCKER_BUILDKIT=0, Debian's
# docker.io) and by buildah (bud --layers). Each builder builds once to warm
# its cache, then the rebuild is timed (median of RUNS). Also: imgbuild's
# cached rebuild of a 10,000-file context with a warm stat index, and the
# same with the index cold (the stat_index table emptied). Not a test:
# numbers depend on the host.
#
#   [IMGBUILD_BEFORE=old/imgbuild] [PEERS=0] bench/bench_cache.sh [IMGBUILD] [RUNS]
#
# With IMGBUILD_BEFORE, an older binary (own store) is measured in the same
# runs, interleaved with the new one, on the same contexts: columns before,
# after, after/before. PEERS=0 skips docker and buildah.
#
# Needs root, /bin/busybox (busybox-static), a running dockerd and buildah.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
IMGBUILD=$(readlink -f "${1:-$(dirname "$0")/../build/imgbuild}")
RUNS=${2:-3}
BEFORE=${IMGBUILD_BEFORE:+$(readlink -f "$IMGBUILD_BEFORE")}
PEERS=${PEERS:-1}
DOCKER=/usr/bin/docker
WORK=$(mktemp -d /var/tmp/imgbuild-bench-cache-XXXXXX)
TAG=imgbuild-bench-cache-$$
trap 'rm -rf "$WORK"; $DOCKER rmi -f "$TAG-base" "$TAG-small" >/dev/null 2>&1 || true' EXIT

# --- the base image, given to every builder ---------------------------------
bench_base_tar "$WORK"
ROOT="$WORK/store"
"$IMGBUILD" --root "$ROOT" import "$WORK/base.tar" "$TAG-base:latest" >/dev/null
"$IMGBUILD" --root "$ROOT" save -o "$WORK/base-image.tar" "$TAG-base:latest"
if [[ -n "$BEFORE" ]]; then
  ROOT_B="$WORK/store-before"
  "$BEFORE" --root "$ROOT_B" import "$WORK/base.tar" "$TAG-base:latest" >/dev/null
fi
BUILDAH=(buildah --storage-driver overlay --root "$WORK/buildah" --runroot "$WORK/buildah-run")
if [[ "$PEERS" != 0 ]]; then
  $DOCKER load -q -i "$WORK/base-image.tar" >/dev/null
  "${BUILDAH[@]}" pull -q "docker-archive:$WORK/base-image.tar" >/dev/null
fi

# --- the workloads -----------------------------------------------------------
mkdir -p "$WORK/ctx-small" "$WORK/ctx-big/src"
echo hello >"$WORK/ctx-small/hello.txt"
cat >"$WORK/ctx-small/Dockerfile" <<DF
FROM $TAG-base
WORKDIR /app
COPY hello.txt .
RUN cat hello.txt > greeting
ENV GREETING=hi
RUN echo \$GREETING >> greeting
CMD ["cat", "/app/greeting"]
DF
for d in $(seq 1 100); do
  mkdir -p "$WORK/ctx-big/src/d$d"
  for f in $(seq 1 100); do
    printf 'file %d/%d\n' "$d" "$f" >"$WORK/ctx-big/src/d$d/f$f.txt"
  done
done
cat >"$WORK/ctx-big/Dockerfile" <<DF
FROM $TAG-base
COPY src/ /src/
RUN ls -R /src | wc -l > /count
DF
sleep 2  # files older than the build start: the stat index may keep them

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
time_runs() {  # name, command…
  local name=$1; shift
  "$@" >/dev/null 2>&1 || { echo "bench: $name failed: $*" >&2; "$@" >&2 || true; exit 1; }  # warm
  for _ in $(seq 1 "$RUNS"); do
    local t0 t1
    t0=$(now)
    "$@" >/dev/null 2>&1
    t1=$(now)
    echo "$t1 - $t0" | bc -l
  done | median
}

# Median wall time of "$@" per run, and of $ALT (a second command line, run
# right after it in every run) when set: prints "after [before]". $PRE_A and
# $PRE_B, when set, run untimed before each timed command.
time_pair() {
  "$@" >/dev/null 2>&1 || { echo "bench: failed: $*" >&2; "$@" >&2 || true; exit 1; }  # warm
  if [[ -n "${ALT:-}" ]]; then eval "$ALT" >/dev/null 2>&1; fi
  for _ in $(seq 1 "$RUNS"); do
    local t0 t1 a b=""
    eval "${PRE_A:-}"
    t0=$(now); "$@" >/dev/null 2>&1; t1=$(now); a=$(echo "$t1 - $t0" | bc -l)
    if [[ -n "${ALT:-}" ]]; then
      eval "${PRE_B:-}"
      t0=$(now); eval "$ALT" >/dev/null 2>&1; t1=$(now); b=$(echo "$t1 - $t0" | bc -l)
    fi
    echo "$a $b"
  done >"$WORK/pairs"
  local ma mb
  ma=$(awk '{print $1}' "$WORK/pairs" | median)
  if [[ -n "${ALT:-}" ]]; then mb=$(awk '{print $2}' "$WORK/pairs" | median); echo "$ma $mb"; else echo "$ma"; fi
}
clear_index() {  # store root
  sqlite3 "$1/meta.db" 'DELETE FROM stat_index' 2>/dev/null ||
    python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('DELETE FROM stat_index'); c.commit()" "$1/meta.db"
}
row() {  # name after [before]
  if [[ -n "${3:-}" ]]; then
    printf '%-28s %9.3fs %9.3fs %12.2f\n' "$1" "$2" "$3" "$(echo "$2 / $3" | bc -l)"
  else
    printf '%-28s %9.3fs\n' "$1" "$2"
  fi
}

ctx="$WORK/ctx-small"
if [[ "$PEERS" != 0 ]]; then
  ti=$(time_runs imgbuild "$IMGBUILD" --root "$ROOT" build --progress quiet -t "$TAG-small" "$ctx")
  td=$(DOCKER_BUILDKIT=0 time_runs docker-classic $DOCKER build -q -t "$TAG-small" "$ctx")
  tb=$(time_runs buildah "${BUILDAH[@]}" bud --isolation chroot --pull-never --layers -q -t "$TAG-small" "$ctx")
  printf '%-28s %10s %10s %10s %16s %16s\n' workload imgbuild docker-v1 buildah imgbuild/docker imgbuild/buildah
  printf '%-28s %9.3fs %9.3fs %9.3fs %16.2f %16.2f\n' "cached rebuild (small)" "$ti" "$td" "$tb" \
    "$(echo "$ti / $td" | bc -l)" "$(echo "$ti / $tb" | bc -l)"
fi

if [[ -n "$BEFORE" ]]; then
  printf '\n%-28s %10s %10s %12s\n' "imgbuild" after before after/before
  ALT="$(printf '%q ' "$BEFORE" --root "$ROOT_B" build --progress quiet -t "$TAG-small" "$ctx")"
  read -r a b < <(ALT=$ALT time_pair "$IMGBUILD" --root "$ROOT" build --progress quiet -t "$TAG-small" "$ctx")
  row "cached rebuild (small)" "$a" "$b"
fi
ctx="$WORK/ctx-big"
ALT=""
[[ -n "$BEFORE" ]] && ALT="$(printf '%q ' "$BEFORE" --root "$ROOT_B" build --progress quiet "$ctx")"
read -r a b < <(ALT=$ALT time_pair "$IMGBUILD" --root "$ROOT" build --progress quiet "$ctx")
row "10k files, warm stat index" "$a" "$b"
read -r a b < <(PRE_A="clear_index $(printf '%q' "$ROOT")" PRE_B="clear_index $(printf '%q' "${ROOT_B:-}")" \
  ALT=$ALT time_pair "$IMGBUILD" --root "$ROOT" build --progress quiet "$ctx")
row "10k files, cold stat index" "$a" "$b"
