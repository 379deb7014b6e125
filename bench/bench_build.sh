#!/usr/bin/env bash
# Build speed: the same Dockerfiles built, without cache, by imgbuild, by the
# BuildKit inside dockerd (Debian's docker.io, DOCKER_BUILDKIT=1) and by
# buildah (bud, chroot isolation, overlay storage). Reports the median wall
# time of RUNS builds per builder and the imgbuild/peer ratios. Not a test:
# numbers depend on the host; run peers side by side in one invocation.
#
#   bench/bench_build.sh [IMGBUILD] [RUNS]
#
# Needs root, /bin/busybox (busybox-static), a running dockerd and buildah.
# The base image is made here from /bin/busybox and given to all three.
set -euo pipefail
IMGBUILD=$(readlink -f "${1:-$(dirname "$0")/../build/imgbuild}")
RUNS=${2:-5}
DOCKER=/usr/bin/docker
WORK=$(mktemp -d /var/tmp/imgbuild-bench-build-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export DOCKER_BUILDKIT=1

# --- the base image, given to every builder ---------------------------------
mkdir -p "$WORK/rootfs/bin" "$WORK/rootfs/etc" "$WORK/rootfs/tmp"
chmod 1777 "$WORK/rootfs/tmp"
cp /bin/busybox "$WORK/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [[ "$applet" == busybox ]] || ln -sf busybox "$WORK/rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n' >"$WORK/rootfs/etc/passwd"
printf 'root:x:0:\napp:x:1000:\n' >"$WORK/rootfs/etc/group"
tar --numeric-owner --sort=name --mtime=@0 -C "$WORK/rootfs" -cf "$WORK/base.tar" .
ROOT="$WORK/store"
"$IMGBUILD" --root "$ROOT" import "$WORK/base.tar" benchbase:latest >/dev/null
"$IMGBUILD" --root "$ROOT" save -o "$WORK/base-image.tar" benchbase:latest
$DOCKER load -q -i "$WORK/base-image.tar" >/dev/null
BUILDAH=(buildah --storage-driver overlay --root "$WORK/buildah" --runroot "$WORK/buildah-run")
"${BUILDAH[@]}" pull -q "docker-archive:$WORK/base-image.tar" >/dev/null
"${BUILDAH[@]}" tag docker.io/library/benchbase:latest benchbase:latest 2>/dev/null || true

# --- the workloads -----------------------------------------------------------
mkdir -p "$WORK/ctx-small" "$WORK/ctx-files/src"
echo hello >"$WORK/ctx-small/hello.txt"
cat >"$WORK/ctx-small/Dockerfile" <<'DF'
FROM benchbase
WORKDIR /app
COPY hello.txt .
RUN cat hello.txt > greeting
ENV GREETING=hi
CMD ["cat", "/app/greeting"]
DF
for i in $(seq 1 2000); do
  printf 'file %d\n' "$i" >"$WORK/ctx-files/src/f$i.txt"
done
cat >"$WORK/ctx-files/Dockerfile" <<'DF'
FROM benchbase AS build
WORKDIR /work
COPY src/ src/
RUN mkdir out && for f in src/*.txt; do cat "$f" >> out/all.txt; done
RUN for i in $(seq 1 3000); do echo $i > /work/out/n$i; done
RUN rm -f src/f1*.txt

FROM benchbase
COPY --from=build /work/out /out
USER app
RUN ls /out | wc -l > /tmp/count
CMD ["cat", "/tmp/count"]
DF

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
time_runs() {  # name, command…
  local name=$1; shift
  for _ in $(seq 1 "$RUNS"); do
    local t0 t1
    t0=$(now)
    "$@" >/dev/null 2>&1 || { echo "bench: $name failed: $*" >&2; "$@" >&2 || true; exit 1; }
    t1=$(now)
    echo "$t1 - $t0" | bc -l
  done | median
}

printf '%-8s %10s %10s %10s %14s %14s\n' workload imgbuild docker buildah imgbuild/docker imgbuild/buildah
for w in small files; do
  ctx="$WORK/ctx-$w"
  ti=$(time_runs imgbuild "$IMGBUILD" --root "$ROOT" build --no-cache --progress quiet -t "bench-$w" "$ctx")
  td=$(time_runs docker $DOCKER build --no-cache --network host -q -t "bench-$w" "$ctx")
  tb=$(time_runs buildah "${BUILDAH[@]}" bud --isolation chroot --pull-never --no-cache --layers -q -t "bench-$w" "$ctx")
  printf '%-8s %9.2fs %9.2fs %9.2fs %14.2f %14.2f\n' "$w" "$ti" "$td" "$tb" \
    "$(echo "$ti / $td" | bc -l)" "$(echo "$ti / $tb" | bc -l)"
done
