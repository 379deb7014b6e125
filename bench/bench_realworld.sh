#!/usr/bin/env bash
# Cold builds of real-world layers (issue 16), side by side in one run:
# imgbuild, dockerd's BuildKit (DOCKER_BUILDKIT=1, Debian's dockerd 20.10) and
# BuildKit v0.22 (../shared/tools/buildkit), against the floor — the same
# filesystem work done by plain shell commands plus the sha256 of each
# layer's tar. Random data hides what compression costs; these layers are
# real files:
#   gobin  COPY of the Go 1.23 toolchain's pkg/tool binaries (~90 MB) and a
#          RUN `cp -a` of them
#   debs   a RUN unpacking a real Debian package set (gcc-12, g++-12, cpp-12,
#          binutils, perl and python modules; `apt-get download`ed once into
#          /var/cache/imgbuild-bench/debs) with busybox `dpkg-deb -x`, the
#          .debs bind-mounted
#   src    COPY of a source tree (BuildKit v0.22's, vendored Go modules:
#          ~10,000 text files)
# Columns (median of RUNS, wall seconds and machine-wide CPU seconds from
# /proc/stat, so daemons count too):
#   imgbuild          build --no-cache into its store
#   bk-dockerd        DOCKER_BUILDKIT=1 docker build --no-cache into dockerd
#   imgbuild-tar      build --no-cache -o type=docker (a docker-load tarball)
#   bk-0.22-tar       BuildKit v0.22 build --no-cache to a docker-load tarball
#   floor             the shell commands plus the sha256 of each layer's tar
#   work              the shell commands alone: work/bkd is the lowest i/bkd
#                     any builder could reach here
# and a push row per workload: a cold build pushed to a fresh repository of
# a loopback docker-registry (imgbuild --push; dockerd: docker build + docker
# push; v0.22: buildctl type=image,push=true).
# Not a test: numbers depend on the host. Needs root, dockerd
# (scripts/services dockerd), /usr/bin/docker, docker-registry, busybox-static,
# golang-1.23-go and BuildKit v0.22 (../shared/tools/buildkit/install).
#
#   [IMGBUILD_BEFORE=old/imgbuild] bench/bench_realworld.sh [IMGBUILD] [RUNS] [WORKLOADS]
# IMGBUILD_BEFORE adds rows for an older binary (its own store; build into
# the store and build+push), measured in the same run.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
IMGBUILD=$(readlink -f "${1:-$HERE/../build/imgbuild}")
RUNS=${2:-3}
WORKLOADS=${3:-gobin debs src}
DOCKER=/usr/bin/docker
BK=$(cd "$HERE/../../shared/tools/buildkit" && pwd)
WORK=$(mktemp -d /var/tmp/imgbuild-bench-real-XXXXXX)
TAG=imgbuild-real-$$
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  $DOCKER rmi -f $($DOCKER images -q --filter "reference=*$TAG*" 2>/dev/null) >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ROOT="$WORK/store"
IMG=("$IMGBUILD" --root "$ROOT")
BEFORE=${IMGBUILD_BEFORE:+$(readlink -f "$IMGBUILD_BEFORE")}
OLD=("${BEFORE:-$IMGBUILD}" --root "$WORK/store-before")
BKADDR=$("$BK/start")
BKBIN=${BUILDKIT_HOME:-/var/cache/buildkit-v0.22.0}/bin

# --- base image and contexts ---------------------------------------------------
bench_base_tar "$WORK" app
BASE=$TAG-base
"${IMG[@]}" import "$WORK/base.tar" "$BASE:latest" >/dev/null
[[ -z $BEFORE ]] || "${OLD[@]}" import "$WORK/base.tar" "$BASE:latest" >/dev/null
"${IMG[@]}" save -o "$WORK/base-image.tar" "$BASE:latest"
$DOCKER load -q -i "$WORK/base-image.tar" >/dev/null
"$BK/archive-to-oci" "$WORK/base-image.tar" "$WORK/base-oci" >/dev/null
BASE_DIGEST=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' \
  "$WORK/base-oci/index.json")

mkdir -p "$WORK/ctx-gobin"
cp -a /usr/lib/go-1.23/pkg/tool "$WORK/ctx-gobin/ctx"
printf 'FROM %s\nCOPY ctx /opt/\nRUN cp -a /opt /opt2\n' "$BASE" >"$WORK/ctx-gobin/Dockerfile"

DEBS=/var/cache/imgbuild-bench/debs
if ! ls "$DEBS"/*.deb >/dev/null 2>&1; then
  mkdir -p "$DEBS"
  (cd "$DEBS" && apt-get download -q gcc-12 cpp-12 g++-12 binutils-x86-64-linux-gnu libgcc-12-dev \
    libstdc++-12-dev perl-modules-5.36 python3.11-minimal libpython3.11-stdlib >/dev/null)
fi
mkdir -p "$WORK/ctx-debs/debs"
cp "$DEBS"/*.deb "$WORK/ctx-debs/debs/"
cat >"$WORK/ctx-debs/Dockerfile" <<DF
FROM $BASE
RUN --mount=type=bind,source=debs,target=/debs for d in /debs/*.deb; do dpkg-deb -x "\$d" /; done
DF

mkdir -p "$WORK/ctx-src"
tar -xzf "$BK/buildkit-v0.22.0-src.tar.gz" -C "$WORK/ctx-src"
mv "$WORK/ctx-src/buildkit-v0.22.0" "$WORK/ctx-src/src"
printf 'FROM %s\nCOPY src /src/\n' "$BASE" >"$WORK/ctx-src/Dockerfile"

floor_gobin() {
  local f=$WORK/floor; rm -rf "$f"; mkdir -p "$f"
  cp -a "$WORK/ctx-gobin/ctx" "$f/opt" && tar -C "$f" -c opt | sha256sum >/dev/null
  cp -a "$f/opt" "$f/opt2" && tar -C "$f" -c opt2 | sha256sum >/dev/null
}
floor_debs() {
  local f=$WORK/floor; rm -rf "$f"; mkdir -p "$f/root"
  for d in "$WORK"/ctx-debs/debs/*.deb; do busybox dpkg-deb -x "$d" "$f/root"; done
  tar -C "$f/root" -c . | sha256sum >/dev/null
}
floor_src() {
  local f=$WORK/floor; rm -rf "$f"; mkdir -p "$f"
  cp -a "$WORK/ctx-src/src" "$f/src" && tar -C "$f" -c src | sha256sum >/dev/null
}

# work_W: the workload's own work alone (no layer, no hash): what no builder
# can go below. work/bkd is the lowest cold-build ratio to dockerd's BuildKit
# that any builder could reach on this machine.
work_gobin() {
  local f=$WORK/floor; rm -rf "$f"; mkdir -p "$f"
  cp -a "$WORK/ctx-gobin/ctx" "$f/opt" && cp -a "$f/opt" "$f/opt2"
}
work_debs() {
  local f=$WORK/floor; rm -rf "$f"; mkdir -p "$f/root"
  for d in "$WORK"/ctx-debs/debs/*.deb; do busybox dpkg-deb -x "$d" "$f/root"; done
}
work_src() {
  local f=$WORK/floor; rm -rf "$f"; mkdir -p "$f"
  cp -a "$WORK/ctx-src/src" "$f/src"
}

# --- measuring ---------------------------------------------------------------------
cpu_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# measure NAME PRUNE -- CMD…: RUNS runs, PRUNE before each (untimed); prints
# "wall cpu" medians.
measure() {
  local name=$1 prune=$2 hz walls=() cpus=()
  shift 3
  hz=$(getconf CLK_TCK)
  for _ in $(seq 1 "$RUNS"); do
    eval "$prune" >/dev/null 2>&1 || true
    sync
    local t0 c0 t1 c1
    t0=$(now); c0=$(cpu_ticks)
    "$@" >"$WORK/out.log" 2>&1 || { echo "bench: $name failed: $*" >&2; tail -20 "$WORK/out.log" >&2; exit 1; }
    t1=$(now); c1=$(cpu_ticks)
    walls+=("$(echo "$t1 - $t0" | bc -l)")
    cpus+=("$(echo "($c1 - $c0) / $hz" | bc -l)")
  done
  printf '%s %s\n' "$(printf '%s\n' "${walls[@]}" | median)" "$(printf '%s\n' "${cpus[@]}" | median)"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

prune_imgbuild() { "${IMG[@]}" rmi -f "$1" >/dev/null 2>&1 || true; "${IMG[@]}" image prune -af >/dev/null 2>&1 || true
  "${IMG[@]}" cache prune -af >/dev/null 2>&1 || true; "${IMG[@]}" import "$WORK/base.tar" "$BASE:latest" >/dev/null; }
prune_before() { "${OLD[@]}" rmi -f "$1" >/dev/null 2>&1 || true; "${OLD[@]}" image prune -af >/dev/null 2>&1 || true
  "${OLD[@]}" cache prune -af >/dev/null 2>&1 || true; "${OLD[@]}" import "$WORK/base.tar" "$BASE:latest" >/dev/null; }
prune_docker() { $DOCKER rmi -f "$1" >/dev/null 2>&1 || true; $DOCKER builder prune -af >/dev/null 2>&1 || true; }
prune_bk() { "$BKBIN/buildctl" --addr "$BKADDR" prune --all >/dev/null 2>&1 || true; rm -f "$WORK/bk.tar"; }

bk022_push() {  # CTX KIND
  "$BKBIN/buildctl" --addr "$BKADDR" build --progress plain --frontend dockerfile.v0 --no-cache \
    --local "context=$1" --local "dockerfile=$1" --oci-layout "base=$WORK/base-oci" \
    --opt "context:$BASE=oci-layout://base@$BASE_DIGEST" \
    --output "type=image,name=$(fresh_ref "$2"),push=true,registry.insecure=true"
}
docker_push() {  # CTX KIND
  local ref; ref=$(fresh_ref "$2")
  env DOCKER_BUILDKIT=1 $DOCKER build --no-cache --network host -q -t "$ref" "$1" && $DOCKER push -q "$ref" &&
    $DOCKER rmi -f "$ref"
}
fresh_ref() { echo "$REG/$TAG-$1-$(date +%s%N):latest"; }
before_push() { "${OLD[@]}" build --no-cache --progress plain -t "$(fresh_ref b)" \
  -o type=image,push=true,registry.insecure=true "$1"; }
imgbuild_push() { "${IMG[@]}" build --no-cache --progress plain -t "$(fresh_ref i)" \
  -o type=image,push=true,registry.insecure=true "$1"; }

start_registry push
echo "# imgbuild $IMGBUILD; $RUNS runs per cell (median wall s / machine CPU s); $(nproc) cores; $WORK"
printf '%-8s %-14s %-14s %-14s %-14s %-14s %-14s %9s %9s %9s %9s\n' workload imgbuild bk-dockerd imgbuild-tar \
  bk-0.22-tar floor work i/bkd it/bk22 i/floor work/bkd
for w in $WORKLOADS; do
  ctx="$WORK/ctx-$w"
  t="$TAG-$w:latest"
  read -r iw ic < <(measure imgbuild "prune_imgbuild $t" -- "${IMG[@]}" build --no-cache --progress plain -t "$t" "$ctx")
  read -r dw dc < <(measure bk-dockerd "prune_docker $t" -- env DOCKER_BUILDKIT=1 $DOCKER build --no-cache \
    --network host -q -t "$t" "$ctx")
  read -r tw tc < <(measure imgbuild-tar "prune_imgbuild $t" -- "${IMG[@]}" build --no-cache --progress plain \
    -o "type=docker,dest=$WORK/i.tar" "$ctx")
  read -r kw kc < <(measure bk-0.22 "prune_bk" -- "$BK/build" --no-cache --image "$BASE=$WORK/base-image.tar" \
    -o "$WORK/bk.tar" "$ctx")
  read -r fw fc < <(measure floor "rm -rf $WORK/floor" -- "floor_$w")
  read -r ww wc < <(measure work "rm -rf $WORK/floor" -- "work_$w")
  printf '%-8s %6.2f/%6.2f  %6.2f/%6.2f  %6.2f/%6.2f  %6.2f/%6.2f  %6.2f/%6.2f  %6.2f/%6.2f  %9s %9s %9s %9s\n' "$w" \
    "$iw" "$ic" "$dw" "$dc" "$tw" "$tc" "$kw" "$kc" "$fw" "$fc" "$ww" "$wc" \
    "$(ratio "$iw" "$dw")" "$(ratio "$tw" "$kw")" "$(ratio "$iw" "$fw")" "$(ratio "$ww" "$dw")"
  read -r pw pc < <(measure "imgbuild push" "prune_imgbuild $t" -- imgbuild_push "$ctx")
  read -r qw qc < <(measure "dockerd push" "prune_docker $t" -- docker_push "$ctx" d)
  read -r rw rc < <(measure "v0.22 push" "prune_bk" -- bk022_push "$ctx" k)
  printf '%-8s %6.2f/%6.2f  %6.2f/%6.2f  %14s %6.2f/%6.2f  %14s %9s %9s  (build+push)\n' "$w-push" \
    "$pw" "$pc" "$qw" "$qc" - "$rw" "$rc" - "$(ratio "$pw" "$qw")" "$(ratio "$pw" "$rw")"
  if [[ -n $BEFORE ]]; then
    read -r bw bc < <(measure before "prune_before $t" -- "${OLD[@]}" build --no-cache --progress plain -t "$t" "$ctx")
    read -r bpw bpc < <(measure "before push" "prune_before $t" -- before_push "$ctx")
    printf '%-8s %6.2f/%6.2f  (before: build; i/b %s)   %6.2f/%6.2f  (before: build+push; i/b %s)\n' "$w-old" \
      "$bw" "$bc" "$(ratio "$iw" "$bw")" "$bpw" "$bpc" "$(ratio "$pw" "$bpw")"
  fi
  prune_docker "$t"
done
echo "i/bkd: imgbuild/dockerd BuildKit; it/bk22: imgbuild -o type=docker / BuildKit v0.22 to a tar"
echo "work: the workload's commands alone (no layer, no hash); work/bkd: the lowest i/bkd any builder could reach"
echo "(push rows: i/bkd = imgbuild/dockerd build+push, it/bk22 column = imgbuild/v0.22 build+push)"
