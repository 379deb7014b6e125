#!/usr/bin/env bash
# Build and export speed: the same Dockerfiles built cold (no cache, pruned
# between runs) by imgbuild, Docker's classic builder (DOCKER_BUILDKIT=0),
# dockerd's BuildKit (DOCKER_BUILDKIT=1) and buildah (bud, chroot isolation,
# overlay storage), then a ~1 GB image exported to a docker tarball by each.
# Reports the median wall time of RUNS runs per tool and imgbuild/peer ratios.
# Not a test: numbers depend on the host; the peers run side by side in one
# invocation so the ratios are comparable.
#
#   bench/bench_build.sh [IMGBUILD] [RUNS] [WORKLOADS] [EXPORT_MB]
#
# WORKLOADS: space-separated subset of "small files copy20k stages6 export"
# (default: all). IMGBUILD_BEFORE=/path/to/older/imgbuild adds a column for
# that binary (same workloads, same run) to show a change's effect. Needs root, /bin/busybox (busybox-static), a running dockerd
# (scripts/services dockerd) with Debian's CLI at /usr/bin/docker, and buildah.
# The base image is made here from /bin/busybox and imported into every tool.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
IMGBUILD=$(readlink -f "${1:-$HERE/../build/imgbuild}")
RUNS=${2:-3}
WORKLOADS=${3:-small files copy20k stages6 export}
EXPORT_MB=${4:-1024}
DOCKER=/usr/bin/docker
WORK=$(mktemp -d /var/tmp/imgbuild-bench-build-XXXXXX)
TAG=imgbuild-bench-$$
cleanup() {
  $DOCKER rmi -f $($DOCKER images -q --filter "reference=$TAG*" 2>/dev/null) >/dev/null 2>&1 || true
  $DOCKER rmi -f "$TAG-base:latest" "$TAG-big:1" >/dev/null 2>&1 || true
  "${BUILDAH[@]}" rmi -af >/dev/null 2>&1 || true
  umount -R "$WORK/buildah/overlay" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
BUILDAH=(buildah --storage-driver overlay --root "$WORK/buildah" --runroot "$WORK/buildah-run")
trap cleanup EXIT
ROOT="$WORK/store"
IMG=("$IMGBUILD" --root "$ROOT")
BEFORE=${IMGBUILD_BEFORE:+$(readlink -f "$IMGBUILD_BEFORE")}
OLD=("${BEFORE:-$IMGBUILD}" --root "$WORK/store-before")

# --- the base image, given to every builder ---------------------------------
bench_base_tar "$WORK" app
BASE=$TAG-base
"${IMG[@]}" import "$WORK/base.tar" "$BASE:latest" >/dev/null
[[ -z $BEFORE ]] || "${OLD[@]}" import "$WORK/base.tar" "$BASE:latest" >/dev/null
"${IMG[@]}" save -o "$WORK/base-image.tar" "$BASE:latest"
$DOCKER load -q -i "$WORK/base-image.tar" >/dev/null
"${BUILDAH[@]}" pull -q "docker-archive:$WORK/base-image.tar" >/dev/null
"${BUILDAH[@]}" tag "localhost/$BASE:latest" "$BASE:latest" 2>/dev/null ||
  "${BUILDAH[@]}" tag "docker.io/library/$BASE:latest" "$BASE:latest" 2>/dev/null || true

# --- the build workloads -----------------------------------------------------
# small: a few metadata steps and one tiny RUN.
mkdir -p "$WORK/ctx-small"
echo hello >"$WORK/ctx-small/hello.txt"
cat >"$WORK/ctx-small/Dockerfile" <<DF
FROM $BASE
WORKDIR /app
COPY hello.txt .
RUN cat hello.txt > greeting
ENV GREETING=hi
CMD ["cat", "/app/greeting"]
DF
# files: 2,000 small files, 3,000 created, a second stage copying from the first.
mkdir -p "$WORK/ctx-files/src"
(cd "$WORK/ctx-files/src" && for i in $(seq 1 2000); do printf 'file %d\n' "$i" >"f$i.txt"; done)
cat >"$WORK/ctx-files/Dockerfile" <<DF
FROM $BASE AS build
WORKDIR /work
COPY src/ src/
RUN mkdir out && for f in src/*.txt; do cat "\$f" >> out/all.txt; done
RUN for i in \$(seq 1 3000); do echo \$i > /work/out/n\$i; done
RUN rm -f src/f1*.txt

FROM $BASE
COPY --from=build /work/out /out
USER app
RUN ls /out | wc -l > /tmp/count
CMD ["cat", "/tmp/count"]
DF
bench_ctx_copy20k "$WORK/ctx-copy20k" "$BASE"
bench_ctx_stages6 "$WORK/ctx-stages6" "$BASE"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
# time_runs NAME PRUNE_CMD -- CMD…: RUNS runs, PRUNE_CMD before each (untimed).
time_runs() {
  local name=$1 prune=$2
  shift 3
  for _ in $(seq 1 "$RUNS"); do
    eval "$prune" >/dev/null 2>&1 || true
    sync
    local t0 t1
    t0=$(now)
    "$@" >"$WORK/out.log" 2>&1 || { echo "bench: $name failed: $*" >&2; tail -20 "$WORK/out.log" >&2; exit 1; }
    t1=$(now)
    echo "$t1 - $t0" | bc -l
  done | median
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
row() {  # workload imgbuild classic buildkit buildah [before]
  local best
  best=$(printf '%s\n' "$3" "$4" "$5" | sort -n | head -1)
  printf '%-9s %8.2fs %8.2fs %8.2fs %8.2fs %8s %8s %8s %8s' "$1" "$2" "$3" "$4" "$5" \
    "$(ratio "$2" "$3")" "$(ratio "$2" "$4")" "$(ratio "$2" "$5")" "$(ratio "$2" "$best")"
  if [[ -n ${6:-} ]]; then
    printf ' %8.2fs %8s %8s' "$6" "$(ratio "$6" "$best")" "$(ratio "$2" "$6")"
  fi
  printf '\n'
}

prune_imgbuild() { "${IMG[@]}" rmi "$1" >/dev/null 2>&1 || true; "${IMG[@]}" image prune -f >/dev/null 2>&1 || true; }
prune_before() { "${OLD[@]}" rmi "$1" >/dev/null 2>&1 || true; "${OLD[@]}" image prune -f >/dev/null 2>&1 || true; }
prune_docker() { $DOCKER rmi -f "$1" >/dev/null 2>&1 || true; $DOCKER builder prune -af >/dev/null 2>&1 || true; }
prune_buildah() { "${BUILDAH[@]}" rmi -f "$1" >/dev/null 2>&1 || true; "${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true; }

echo "# imgbuild $IMGBUILD; $RUNS runs per cell (median); $(nproc) cores; work dir $WORK"
printf '%-9s %9s %9s %9s %9s %8s %8s %8s %8s' workload imgbuild classic buildkit buildah \
  i/class i/bkit i/bah i/best
[[ -z $BEFORE ]] || printf ' %9s %8s %8s' before b/best i/b
printf '\n'
for w in $WORKLOADS; do
  [[ $w == export ]] && continue
  ctx="$WORK/ctx-$w"
  t="$TAG-$w:latest"
  ti=$(time_runs imgbuild "prune_imgbuild $t" -- "${IMG[@]}" build --no-cache --progress quiet -t "$t" "$ctx")
  tc=$(time_runs classic "prune_docker $t" -- env DOCKER_BUILDKIT=0 $DOCKER build --no-cache --network host -q -t "$t" "$ctx")
  tk=$(time_runs buildkit "prune_docker $t" -- env DOCKER_BUILDKIT=1 $DOCKER build --no-cache --network host -q -t "$t" "$ctx")
  tb=$(time_runs buildah "prune_buildah $t" -- "${BUILDAH[@]}" bud --isolation chroot --pull-never --no-cache --layers -q -t "$t" "$ctx")
  to=
  [[ -z $BEFORE ]] || to=$(time_runs before "prune_before $t" -- "${OLD[@]}" build --no-cache --progress quiet -t "$t" "$ctx")
  row "$w" "$ti" "$tc" "$tk" "$tb" "$to"
  prune_docker "$t"
  prune_buildah "$t"
done

# --- export (issue 5 (c)): a ~1 GB image to a docker tarball -----------------
if [[ " $WORKLOADS " == *" export "* ]]; then
  big=$TAG-big:1
  python3 "$HERE/gen_image.py" "$WORK/big.tar" "$EXPORT_MB" 4 "$big"
  "${IMG[@]}" load -i "$WORK/big.tar" >/dev/null
  [[ -z $BEFORE ]] || "${OLD[@]}" load -i "$WORK/big.tar" >/dev/null
  $DOCKER load -q -i "$WORK/big.tar" >/dev/null
  "${BUILDAH[@]}" pull -q "docker-archive:$WORK/big.tar" >/dev/null
  rm -f "$WORK/big.tar"
  mkdir -p "$WORK/ctx-export"
  printf 'FROM %s\nLABEL bench=export\n' "$big" >"$WORK/ctx-export/Dockerfile"
  out="$WORK/export.tar"
  ts=$(time_runs "imgbuild save" "rm -f $out" -- "${IMG[@]}" save -o "$out" "$big")
  to=$(time_runs "imgbuild -o type=docker" "rm -f $out" -- "${IMG[@]}" build --no-cache --progress quiet \
    -o "type=docker,dest=$out" "$WORK/ctx-export")
  tsb=
  [[ -z $BEFORE ]] || tsb=$(time_runs "before save" "rm -f $out" -- "${OLD[@]}" save -o "$out" "$big")
  td=$(time_runs "docker save" "rm -f $out" -- $DOCKER save -o "$out" "$big")
  tb=$(time_runs "buildah push" "rm -f $out" -- "${BUILDAH[@]}" push -q "$big" "docker-archive:$out:$big")
  rm -f "$out"
  best=$(printf '%s\n' "$td" "$tb" | sort -n | head -1)
  printf '%-9s %8.2fs %9s %8.2fs %8.2fs %8s %8s %8s %8s' export "$ts" - "$td" "$tb" - \
    "$(ratio "$ts" "$td")" "$(ratio "$ts" "$tb")" "$(ratio "$ts" "$best")"
  [[ -z $tsb ]] || printf ' %8.2fs %8s %8s' "$tsb" "$(ratio "$tsb" "$best")" "$(ratio "$ts" "$tsb")"
  printf '  (imgbuild save)\n'
  printf '%-9s %8.2fs %9s %9s %9s %8s %8s %8s %8s  (imgbuild build -o type=docker)\n' export-o "$to" - - - - \
    "$(ratio "$to" "$td")" "$(ratio "$to" "$tb")" "$(ratio "$to" "$best")"
  echo "(export: classic and BuildKit share dockerd's 'docker save'; shown under buildkit)"
fi
