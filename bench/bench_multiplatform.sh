#!/usr/bin/env bash
# A two-platform build (issue 15): one Dockerfile built for linux/amd64 and
# linux/arm64 from one amd64 host, cold (--no-cache), to an OCI layout tar
# holding the image index, by imgbuild and by BuildKit v0.22
# (../shared/tools/buildkit), side by side in one run, as a ratio (target
# <= 0.7). The Dockerfile has what real cross builds have: a generator stage
# `FROM --platform=$BUILDPLATFORM` (native, built once for both targets; it
# writes 3,000 files), and per target a COPY --from of its output and a RUN
# that runs the target's busybox (under qemu for arm64) writing 500 files.
# The base is a multi-platform image: the host's /bin/busybox (amd64) and
# Debian's busybox-static:arm64 (cached by scripts/deps --test).
# Not a test: numbers depend on the host. Needs root, qemu registered
# (scripts/binfmt), BuildKit v0.22 (../shared/tools/buildkit/install).
#
#   bench/bench_multiplatform.sh [IMGBUILD] [RUNS]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
IMGBUILD=$(readlink -f "${1:-$HERE/../build/imgbuild}")
RUNS=${2:-3}
BK=$(cd "$HERE/../../shared/tools/buildkit" && pwd)
WORK=$(mktemp -d /var/tmp/imgbuild-bench-mp-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
IMG=("$IMGBUILD" --root "$WORK/store")
DEB=$(ls /var/cache/imgbuild-test/debs/busybox-static_*_arm64.deb 2>/dev/null | head -1)
[[ -n $DEB ]] || { echo "bench: no busybox-static arm64 .deb: run scripts/deps --test" >&2; exit 1; }
"$HERE/../scripts/binfmt" >/dev/null

# --- the two-platform base --------------------------------------------------
bench_base_tar "$WORK"
mv "$WORK/base.tar" "$WORK/base-amd64.tar"
A=$WORK/rootfs-arm64
mkdir -p "$A/bin" "$A/etc" "$A/tmp" "$WORK/deb"
chmod 1777 "$A/tmp"
dpkg-deb -x "$DEB" "$WORK/deb"
cp "$WORK/deb/bin/busybox" "$A/bin/busybox"
for applet in $(/bin/busybox --list); do
  [[ $applet == busybox ]] || ln -sf busybox "$A/bin/$applet"
done
cp "$WORK/rootfs/etc/passwd" "$WORK/rootfs/etc/group" "$A/etc/"
tar --numeric-owner --sort=name --mtime=@0 -C "$A" -cf "$WORK/base-arm64.tar" .
"${IMG[@]}" import --platform linux/amd64 "$WORK/base-amd64.tar" mpbase-amd64 >/dev/null
"${IMG[@]}" import --platform linux/arm64 "$WORK/base-arm64.tar" mpbase-arm64 >/dev/null
"${IMG[@]}" manifest create mpbase mpbase-amd64 mpbase-arm64 >/dev/null
"${IMG[@]}" save -o "$WORK/mpbase.tar" mpbase
mkdir -p "$WORK/mpbase-oci"
tar -xf "$WORK/mpbase.tar" -C "$WORK/mpbase-oci"

# shared: the generator does not read the target (built once; every
# target copies the same tree). per-target: it does (ARG TARGETARCH, as a
# cross-compiling stage does), so it runs natively once per target and each
# target copies its own tree.
mkdir -p "$WORK/shared" "$WORK/per-target"
cat >"$WORK/shared/Dockerfile" <<'DF'
FROM --platform=$BUILDPLATFORM mpbase AS gen
RUN mkdir /gen && cd /gen && i=0 && while [ $i -lt 3000 ]; do echo "generated $i" > f$i; i=$((i+1)); done
FROM mpbase
ARG TARGETPLATFORM
COPY --from=gen /gen /gen
RUN uname -m > /arch && echo "$TARGETPLATFORM" > /platform && mkdir /own && i=0 && \
    while [ $i -lt 500 ]; do echo "$i" > /own/f$i; i=$((i+1)); done
DF
cat >"$WORK/per-target/Dockerfile" <<'DF'
FROM --platform=$BUILDPLATFORM mpbase AS gen
ARG TARGETARCH
RUN mkdir /gen && cd /gen && i=0 && while [ $i -lt 3000 ]; do echo "$TARGETARCH $i" > f$i; i=$((i+1)); done
FROM mpbase
ARG TARGETPLATFORM
COPY --from=gen /gen /gen
RUN uname -m > /arch && echo "$TARGETPLATFORM" > /platform && mkdir /own && i=0 && \
    while [ $i -lt 500 ]; do echo "$i" > /own/f$i; i=$((i+1)); done
DF

# --- measuring ----------------------------------------------------------------
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
timed() {  # CMD…: wall seconds
  local t0 t1
  t0=$(now)
  "$@" >"$WORK/out.log" 2>&1 || { echo "bench: failed: $*" >&2; tail -20 "$WORK/out.log" >&2; exit 1; }
  t1=$(now)
  echo "$t1 - $t0" | bc -l
}
PLATFORMS=linux/amd64,linux/arm64
echo "# $RUNS runs (median wall s); $(nproc) cores; --platform $PLATFORMS -o type=oci, cold"
printf '%-12s %10s %16s %16s\n' workload imgbuild "BuildKit v0.22" "imgbuild/v0.22"
for workload in shared per-target; do
  ctx=$WORK/$workload
  iw=() kw=()
  for _ in $(seq 1 "$RUNS"); do
    # No prune between runs, for either engine (--no-cache runs every step;
    # both keep what earlier runs left). On ext4 without a journal (this
    # VM's root) an inode freed in the last 60 s is skipped, one inode-table
    # lookup each, when a new file is made: a prune of thousands of files
    # just before a run makes the run's own file creation 2-3x slower.
    sync
    iw+=("$(timed "${IMG[@]}" build --no-cache --progress plain --platform "$PLATFORMS" \
      -o "type=oci,dest=$WORK/i.tar" "$ctx")")
    "$BK/build" --no-cache --platform "$PLATFORMS" --image "mpbase=$WORK/mpbase-oci" --oci-output \
      -o "$WORK/warm.tar" "$ctx" >/dev/null 2>&1 || true  # v0.22 loads the base once, untimed
    rm -f "$WORK/bk.tar"
    sync
    kw+=("$(timed "$BK/build" --no-cache --platform "$PLATFORMS" --image "mpbase=$WORK/mpbase-oci" --oci-output \
      -o "$WORK/bk.tar" "$ctx")")
  done
  i=$(printf '%s\n' "${iw[@]}" | median)
  k=$(printf '%s\n' "${kw[@]}" | median)
  printf '%-12s %9.2fs %15.2fs %16s\n' "$workload" "$i" "$k" "$(ratio "$i" "$k")"
done
