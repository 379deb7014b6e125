#!/usr/bin/env bash
# Save/load of a ~1 GB multi-layer image: imgbuild against skopeo copy and
# docker save/load. Reports wall time, peak RSS (from /usr/bin/time -v) and
# the imgbuild/peer wall-time ratios. Not a test: numbers depend on the host.
#
#   bench/bench_save_load.sh [IMGBUILD] [SIZE_MB] [LAYERS]
#
# The image is generated here: LAYERS layers of random (incompressible)
# data, SIZE_MB in total, written as a docker-save archive by gen_image.py
# from a readable spec (no committed binaries).
set -euo pipefail
IMGBUILD=${1:-$(dirname "$0")/../build/imgbuild}
IMGBUILD=$(readlink -f "$IMGBUILD")
SIZE_MB=${2:-1024}
LAYERS=${3:-4}
WORK=$(mktemp -d /var/tmp/imgbuild-bench-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
DOCKER=/usr/bin/docker

echo "# image: ${SIZE_MB} MB in ${LAYERS} layers; work dir $WORK" >&2
python3 "$(dirname "$0")/gen_image.py" "$WORK/image.tar" "$SIZE_MB" "$LAYERS" bench/big:1

# measure LABEL CMD…: runs once, records wall seconds and max RSS (kB).
declare -A WALL RSS
measure() {
  local label=$1
  shift
  sync
  /usr/bin/time -v -o "$WORK/time.txt" "$@" >/dev/null 2>"$WORK/err.txt" || {
    echo "$label failed:" >&2
    cat "$WORK/err.txt" >&2
    return 1
  }
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$WORK/time.txt" |
    awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
  WALL[$label]=$wall
  RSS[$label]=$rss
  printf '%-34s %8.2f s %10d kB max RSS\n' "$label" "$wall" "$rss"
}
ratio() { awk -v a="${WALL[$1]}" -v b="${WALL[$2]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

ROOT="$WORK/store"
measure "imgbuild load" "$IMGBUILD" --root "$ROOT" load -i "$WORK/image.tar"
measure "imgbuild save" "$IMGBUILD" --root "$ROOT" save -o "$WORK/imgbuild-save.tar" bench/big:1
rm -f "$WORK/imgbuild-save.tar"

if command -v skopeo >/dev/null; then
  measure "skopeo docker-archive -> oci dir" skopeo copy -q "docker-archive:$WORK/image.tar" "oci:$WORK/oci:big"
  measure "skopeo oci dir -> docker-archive" skopeo copy -q "oci:$WORK/oci:big" "docker-archive:$WORK/skopeo-save.tar:bench/big:1"
  rm -rf "$WORK/oci" "$WORK/skopeo-save.tar"
fi

if [[ -x $DOCKER ]] && $DOCKER info >/dev/null 2>&1; then
  $DOCKER rmi bench/big:1 >/dev/null 2>&1 || true
  measure "docker load" $DOCKER load -i "$WORK/image.tar"
  measure "docker save" $DOCKER save -o "$WORK/docker-save.tar" bench/big:1
  $DOCKER rmi bench/big:1 >/dev/null 2>&1 || true
  rm -f "$WORK/docker-save.tar"
fi

echo
echo "wall-time ratios (imgbuild / peer; < 1 is faster):"
[[ -n ${WALL["skopeo docker-archive -> oci dir"]:-} ]] &&
  echo "  load vs skopeo docker-archive->oci: $(ratio "imgbuild load" "skopeo docker-archive -> oci dir")" &&
  echo "  save vs skopeo oci->docker-archive: $(ratio "imgbuild save" "skopeo oci dir -> docker-archive")"
[[ -n ${WALL["docker load"]:-} ]] &&
  echo "  load vs docker load:                $(ratio "imgbuild load" "docker load")" &&
  echo "  save vs docker save:                $(ratio "imgbuild save" "docker save")"
echo "(docker's RSS is the CLI's; the work happens in dockerd)"
