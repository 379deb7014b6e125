#!/usr/bin/env bash
# What rootless costs: bench_build's copy20k and stages6 built cold (fresh
# store each run) and cached (the same build again) by imgbuild in each mode,
# side by side in one run, as ratios to root on the host. The modes take
# turns within each round (root, rootless, ctr-user, ctr-root, then again),
# so a machine that slows down over the run slows every mode alike:
#   root         root on the host (namespaces, overlay)
#   rootless     a user with subordinate ids on the host (user namespace,
#                overlay with userxattr)            -- issue 12 target ≤ 1.3×
#   ctr-user     user 1000 in a container, seccomp=unconfined (the same
#                user namespace mode inside Docker)  -- target ≤ 1.3×
#   ctr-root     root in a container with Docker's default profile (chroot
#                isolation, copy snapshotter)
# Not a test: numbers depend on the host.
#
#   bench/bench_rootless.sh [IMGBUILD] [RUNS] [WORKLOADS]
#
# Needs root, /bin/busybox, setpriv, a running dockerd (scripts/services
# dockerd) with /usr/bin/docker, setcap (libcap2-bin); makes the test user
# with scripts/test-user.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
IMGBUILD=$(readlink -f "${1:-$HERE/../build/imgbuild}")
RUNS=${2:-3}
WORKLOADS=${3:-copy20k stages6}
DOCKER=/usr/bin/docker
read -r TUSER TUID TGID < <("$HERE/../scripts/test-user")
WORK=$(mktemp -d /var/tmp/imgbuild-bench-rootless-XXXXXX)
chmod 755 "$WORK"
IMAGE=imgbuild-bench-rootless:$$
cleanup() {
  $DOCKER rmi -f "$IMAGE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- the base image and the workloads (as bench_build.sh) -------------------
bench_base_tar "$WORK" app
BASE=bench-base
bench_ctx_copy20k "$WORK/ctx-copy20k" "$BASE"
bench_ctx_stages6 "$WORK/ctx-stages6" "$BASE"
chown -R "$TUID:$TGID" "$WORK/ctx-copy20k" "$WORK/ctx-stages6" "$WORK/base.tar"

# --- the container image: imgbuild, what it links, busybox, the map tools --
R=$WORK/ctr
mkdir -p "$R/usr/local/bin" "$R/bin" "$R/etc" "$R/tmp"
chmod 1777 "$R/tmp"
cp "$IMGBUILD" "$R/usr/local/bin/imgbuild"
cp /usr/bin/newuidmap /usr/bin/newgidmap /bin/busybox "$R/bin/"
# GNU date for nanosecond timestamps (busybox date has none); the container
# modes are timed with it inside the container.
mkdir -p "$R/opt/bench"
cp /bin/date "$R/opt/bench/date"
setcap cap_setuid=ep "$R/bin/newuidmap"
setcap cap_setgid=ep "$R/bin/newgidmap"
for a in $(/bin/busybox --list); do [[ $a == busybox ]] || ln -sf busybox "$R/bin/$a"; done
for f in "$IMGBUILD" /usr/bin/newuidmap /usr/bin/newgidmap /bin/date; do
  for l in $(ldd "$f" | grep -o '/[^ ]*'); do mkdir -p "$R$(dirname "$l")"; cp -L "$l" "$R$l"; done
done
printf 'root:x:0:0:root:/root:/bin/sh\nbuilder:x:%s:%s::/work:/bin/sh\n' "$TUID" "$TGID" >"$R/etc/passwd"
printf 'root:x:0:\nbuilder:x:%s:\n' "$TGID" >"$R/etc/group"
echo "builder:100000:65536" >"$R/etc/subuid"
cp "$R/etc/subuid" "$R/etc/subgid"
tar --xattrs --xattrs-include=security.capability --numeric-owner -C "$R" -cf "$WORK/ctr.tar" .
$DOCKER import "$WORK/ctr.tar" "$IMAGE" >/dev/null
rm -rf "$R" "$WORK/ctr.tar"

# --- the modes ---------------------------------------------------------------
# Inside a container: run imgbuild and print its wall time last, on stderr.
IN_CTR='t0=$(/opt/bench/date +%s.%N); imgbuild "$@"; rc=$?; t1=$(/opt/bench/date +%s.%N); echo "$t0 $t1" | awk "{printf \"%.4f\\n\", \$2 - \$1}" >&2; exit $rc'

# run_mode MODE STORE ARGS…: imgbuild in MODE with --root STORE.
run_mode() {
  local mode=$1 store=$2
  shift 2
  case $mode in
    root) "$IMGBUILD" --root "$store" "$@" ;;
    rootless) setpriv --reuid="$TUID" --regid="$TGID" --clear-groups env HOME="$WORK" \
      "$IMGBUILD" --root "$store" "$@" ;;
    ctr-user) $DOCKER run --rm --network none --security-opt seccomp=unconfined --user "$TUID:$TGID" \
      -v "$WORK:$WORK" -e HOME="$WORK" "$IMAGE" /bin/sh -c "$IN_CTR" sh --root "$store" "$@" ;;
    ctr-root) $DOCKER run --rm --network none -v "$WORK:$WORK" "$IMAGE" /bin/sh -c "$IN_CTR" sh --root "$store" "$@" ;;
  esac
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# timed MODE STORE ARGS…: the wall time of one imgbuild command, measured
# where it runs (busybox time inside a container: docker's own start-up is
# not imgbuild's cost).
timed() {
  local mode=$1 store=$2
  shift 2
  case $mode in
    ctr-*) run_mode "$mode" "$store" "$@" 2>&1 >/dev/null | tail -1 ;;
    *)
      local t0 t1
      t0=$(date +%s.%N)
      run_mode "$mode" "$store" "$@" >/dev/null 2>&1
      t1=$(date +%s.%N)
      echo "$t1 - $t0" | bc -l
      ;;
  esac
}

# one_round MODE WORKLOAD: prints "cold cached" of one fresh store.
one_round() {
  local mode=$1 w=$2 store=$WORK/store-$1
  rm -rf "$store"
  mkdir -p "$store"
  [[ $mode == root || $mode == ctr-root ]] || chown "$TUID:$TGID" "$store"
  run_mode "$mode" "$store" import "$WORK/base.tar" "$BASE" >/dev/null 2>&1
  sync
  local cold cached
  cold=$(timed "$mode" "$store" build --progress quiet "$WORK/ctx-$w")
  cached=$(timed "$mode" "$store" build --progress quiet "$WORK/ctx-$w")
  rm -rf "$store"
  echo "$cold $cached"
}

MODES="root rootless ctr-user ctr-root"
echo "# imgbuild $IMGBUILD; $RUNS rounds (median), modes interleaved within each round; $(nproc) cores; container modes timed inside the container"
printf '%-9s %-9s %9s %9s %9s %9s\n' workload mode cold cached cold/root cached/root
for w in $WORKLOADS; do
  declare -A colds=() cacheds=()
  for _ in $(seq 1 "$RUNS"); do
    for mode in $MODES; do
      read -r c k < <(one_round "$mode" "$w")
      colds[$mode]+="$c "
      cacheds[$mode]+="$k "
    done
  done
  root_cold=$(printf '%s\n' ${colds[root]} | median)
  root_cached=$(printf '%s\n' ${cacheds[root]} | median)
  for mode in $MODES; do
    cold=$(printf '%s\n' ${colds[$mode]} | median)
    cached=$(printf '%s\n' ${cacheds[$mode]} | median)
    printf '%-9s %-9s %8.2fs %8.3fs %9s %9s\n' "$w" "$mode" "$cold" "$cached" \
      "$(ratio "$cold" "$root_cold")" "$(ratio "$cached" "$root_cached")"
  done
  unset colds cacheds
done
