#!/usr/bin/env bash
# Push and pull of a ~1 GB, 5-layer image to a loopback docker-registry:
# imgbuild push/pull against skopeo copy of the same image, both directions.
# Reports wall time, peak RSS (from /usr/bin/time -v) and the imgbuild/skopeo
# wall-time ratios. Not a test: numbers depend on the host.
#
#   bench/bench_registry.sh [IMGBUILD] [SIZE_MB] [LAYERS] [RUNS]
#
# Each tool runs RUNS times (default 3), alternating, and the fastest run
# counts (the machine is shared; the minimum is the least noisy). Each push
# goes to a fresh registry (so every blob is really uploaded); each pull goes
# into an empty destination. skopeo runs with
# --preserve-digests so it sends the layers as they are, like imgbuild (it
# would otherwise gzip uncompressed layers on the way to a registry).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
IMGBUILD=${1:-$(dirname "$0")/../build/imgbuild}
IMGBUILD=$(readlink -f "$IMGBUILD")
SIZE_MB=${2:-1024}
LAYERS=${3:-5}
RUNS=${4:-3}
WORK=$(mktemp -d /var/tmp/imgbuild-bench-reg-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
for tool in /usr/bin/docker-registry /usr/bin/skopeo /usr/bin/time; do
  [[ -x $tool ]] || { echo "$tool is missing" >&2; exit 1; }
done

echo "# image: ${SIZE_MB} MB in ${LAYERS} layers; work dir $WORK" >&2
python3 "$(dirname "$0")/gen_image.py" "$WORK/image.tar" "$SIZE_MB" "$LAYERS" bench/big:1


# measure LABEL CMD…: runs once; keeps the fastest wall seconds (and that
# run's max RSS, kB) per label.
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
  printf '  %-28s %8.2f s %10d kB max RSS\n' "$label" "$wall" "$rss" >&2
  if [[ -z ${WALL[$label]:-} ]] || awk -v a="$wall" -v b="${WALL[$label]}" 'BEGIN { exit !(a < b) }'; then
    WALL[$label]=$wall
    RSS[$label]=$rss
  fi
}
ratio() { awk -v a="${WALL[$1]}" -v b="${WALL[$2]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# The same image in imgbuild's store and in an OCI layout for skopeo.
"$IMGBUILD" --root "$WORK/store" load -i "$WORK/image.tar" >/dev/null
skopeo copy -q --dest-oci-accept-uncompressed-layers "docker-archive:$WORK/image.tar" "oci:$WORK/oci:big"
rm -f "$WORK/image.tar"

for run in $(seq "$RUNS"); do
  echo "# run $run" >&2
  start_registry "imgbuild-$run"
  REG_IMGBUILD=$REG
  start_registry "skopeo-$run"
  REG_SKOPEO=$REG
  push_imgbuild() { measure "imgbuild push" "$IMGBUILD" --root "$WORK/store" push bench/big:1 "$REG_IMGBUILD/bench/big:1"; }
  push_skopeo() {
    measure "skopeo copy oci -> registry" skopeo copy -q --preserve-digests --dest-tls-verify=false \
      "oci:$WORK/oci:big" "docker://$REG_SKOPEO/bench/big:1"
  }
  pull_imgbuild() {
    measure "imgbuild pull" "$IMGBUILD" --root "$WORK/pulled" pull "$REG_IMGBUILD/bench/big:1"
    rm -rf "$WORK/pulled"
  }
  pull_skopeo() {
    measure "skopeo copy registry -> oci" skopeo copy -q --preserve-digests --src-tls-verify=false \
      --dest-oci-accept-uncompressed-layers "docker://$REG_SKOPEO/bench/big:1" "oci:$WORK/skopeo-pulled:big"
    rm -rf "$WORK/skopeo-pulled"
  }
  # Alternate which tool goes first.
  if ((run % 2)); then
    push_imgbuild; push_skopeo; pull_imgbuild; pull_skopeo
  else
    push_skopeo; push_imgbuild; pull_skopeo; pull_imgbuild
  fi
  # Stop this run's registries and drop their data.
  kill "${PIDS[-1]}" "${PIDS[-2]}" 2>/dev/null || true
  wait "${PIDS[-1]}" "${PIDS[-2]}" 2>/dev/null || true
  PIDS=("${PIDS[@]:0:${#PIDS[@]}-2}")
  rm -rf "$WORK/registry-imgbuild-$run" "$WORK/registry-skopeo-$run"
done

echo "best of $RUNS:"
for label in "imgbuild push" "skopeo copy oci -> registry" "imgbuild pull" "skopeo copy registry -> oci"; do
  printf '%-30s %8.2f s %10d kB max RSS\n' "$label" "${WALL[$label]}" "${RSS[$label]}"
done
echo
echo "wall-time ratios (imgbuild / skopeo; < 1 is faster):"
echo "  push: $(ratio "imgbuild push" "skopeo copy oci -> registry")"
echo "  pull: $(ratio "imgbuild pull" "skopeo copy registry -> oci")"
