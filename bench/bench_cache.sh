#!/usr/bin/env bash
# Fully cached rebuilds: the same Dockerfile rebuilt with nothing changed by
# imgbuild, by Docker's classic builder (DOCKER_BUILDKIT=0, Debian's
# docker.io) and by buildah (bud --layers). Each builder builds once to warm
# its cache, then the rebuild is timed (median of RUNS). Also: imgbuild's
# cached rebuild of a 10,000-file context with a warm stat index, and the
# same with the index cold (the stat_index table emptied). Not a test:
# numbers depend on the host.
#
#   bench/bench_cache.sh [IMGBUILD] [RUNS]
#
# Needs root, /bin/busybox (busybox-static), a running dockerd and buildah.
set -euo pipefail
IMGBUILD=$(readlink -f "${1:-$(dirname "$0")/../build/imgbuild}")
RUNS=${2:-3}
DOCKER=/usr/bin/docker
WORK=$(mktemp -d /var/tmp/imgbuild-bench-cache-XXXXXX)
TAG=imgbuild-bench-cache-$$
trap 'rm -rf "$WORK"; $DOCKER rmi -f "$TAG-base" "$TAG-small" >/dev/null 2>&1 || true' EXIT

# --- the base image, given to every builder ---------------------------------
mkdir -p "$WORK/rootfs/bin" "$WORK/rootfs/etc" "$WORK/rootfs/tmp"
chmod 1777 "$WORK/rootfs/tmp"
cp /bin/busybox "$WORK/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [[ "$applet" == busybox ]] || ln -sf busybox "$WORK/rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$WORK/rootfs/etc/passwd"
printf 'root:x:0:\n' >"$WORK/rootfs/etc/group"
tar --numeric-owner --sort=name --mtime=@0 -C "$WORK/rootfs" -cf "$WORK/base.tar" .
ROOT="$WORK/store"
"$IMGBUILD" --root "$ROOT" import "$WORK/base.tar" "$TAG-base:latest" >/dev/null
"$IMGBUILD" --root "$ROOT" save -o "$WORK/base-image.tar" "$TAG-base:latest"
$DOCKER load -q -i "$WORK/base-image.tar" >/dev/null
BUILDAH=(buildah --storage-driver overlay --root "$WORK/buildah" --runroot "$WORK/buildah-run")
"${BUILDAH[@]}" pull -q "docker-archive:$WORK/base-image.tar" >/dev/null

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

ctx="$WORK/ctx-small"
ti=$(time_runs imgbuild "$IMGBUILD" --root "$ROOT" build --progress quiet -t "$TAG-small" "$ctx")
td=$(DOCKER_BUILDKIT=0 time_runs docker-classic $DOCKER build -q -t "$TAG-small" "$ctx")
tb=$(time_runs buildah "${BUILDAH[@]}" bud --isolation chroot --pull-never --layers -q -t "$TAG-small" "$ctx")
printf '%-28s %10s %10s %10s %16s %16s\n' workload imgbuild docker-v1 buildah imgbuild/docker imgbuild/buildah
printf '%-28s %9.3fs %9.3fs %9.3fs %16.2f %16.2f\n' "cached rebuild (small)" "$ti" "$td" "$tb" \
  "$(echo "$ti / $td" | bc -l)" "$(echo "$ti / $tb" | bc -l)"

ctx="$WORK/ctx-big"
tw=$(time_runs imgbuild "$IMGBUILD" --root "$ROOT" build --progress quiet "$ctx")
for _ in $(seq 1 "$RUNS"); do
  sqlite3 "$ROOT/meta.db" 'DELETE FROM stat_index' 2>/dev/null ||
    python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('DELETE FROM stat_index'); c.commit()" "$ROOT/meta.db"
  t0=$(now)
  "$IMGBUILD" --root "$ROOT" build --progress quiet "$ctx" >/dev/null 2>&1
  t1=$(now)
  echo "$t1 - $t0" | bc -l
done | median >"$WORK/cold"
tc=$(cat "$WORK/cold")
printf '%-28s %9.3fs\n' "10k files, warm stat index" "$tw"
printf '%-28s %9.3fs\n' "10k files, cold stat index" "$tc"
