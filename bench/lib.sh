# Shared pieces of the bench scripts (sourced, not run): the busybox base
# image and the build workloads, so that every script measures the same work.

# bench_base_tar WORK [USERS]: $WORK/rootfs from /bin/busybox (one symlink a
# applet) and $WORK/base.tar of it (sorted, mtime 0). USERS=app adds the user
# app (1000:1000) to passwd and group.
bench_base_tar() {
  local work=$1 users=${2:-}
  mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
  chmod 1777 "$work/rootfs/tmp"
  cp /bin/busybox "$work/rootfs/bin/busybox"
  local applet
  for applet in $(/bin/busybox --list); do
    [[ "$applet" == busybox ]] || ln -sf busybox "$work/rootfs/bin/$applet"
  done
  if [[ $users == app ]]; then
    printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n' >"$work/rootfs/etc/passwd"
    printf 'root:x:0:\napp:x:1000:\n' >"$work/rootfs/etc/group"
  else
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$work/rootfs/etc/passwd"
    printf 'root:x:0:\n' >"$work/rootfs/etc/group"
  fi
  tar --numeric-owner --sort=name --mtime=@0 -C "$work/rootfs" -cf "$work/base.tar" .
}

# bench_ctx_copy20k DIR BASE (issue 5 (a)): COPY of a 20,000-file context
# (20 dirs of 1,000 files, 100 B-8 KiB), one RUN creating 5,000 files and a
# 50 MB file.
bench_ctx_copy20k() {
  local dir=$1 base=$2
  mkdir -p "$dir"
  python3 - "$dir/src" <<'PY'
import os, random, sys
rng = random.Random(20000)
for d in range(20):
    dd = os.path.join(sys.argv[1], f"d{d:02d}")
    os.makedirs(dd)
    for f in range(1000):
        with open(os.path.join(dd, f"f{f:04d}.txt"), "w") as fh:
            fh.write((f"line {d} {f} " * rng.randint(8, 600))[: rng.randint(100, 8192)])
PY
  cat >"$dir/Dockerfile" <<DF
FROM $base
COPY src/ /src/
RUN mkdir /gen && cd /gen && i=0 && while [ \$i -lt 5000 ]; do echo \$i > f\$i; i=\$((i+1)); done && \\
    head -c 52428800 /dev/urandom > /big.bin
CMD ["ls", "/src"]
DF
}

# bench_ctx_stages6 DIR BASE (issue 5 (b)): six independent stages, each a
# RUN writing files, combined by COPY --from in a final stage.
bench_ctx_stages6() {
  local dir=$1 base=$2 s
  mkdir -p "$dir"
  {
    for s in 1 2 3 4 5 6; do
      cat <<DF
FROM $base AS s$s
RUN mkdir /out && cd /out && i=0 && while [ \$i -lt 1000 ]; do echo "stage $s file \$i" > f\$i; i=\$((i+1)); done && \\
    head -c 4194304 /dev/urandom > blob$s.bin

DF
    done
    echo "FROM $base"
    for s in 1 2 3 4 5 6; do echo "COPY --from=s$s /out /out/s$s"; done
    echo 'CMD ["ls", "/out"]'
  } >"$dir/Dockerfile"
}

# start_registry NAME: a plain-HTTP docker-registry on a free loopback port
# (data under $WORK/registry-NAME, pid appended to PIDS); sets REG to its
# host:port.
start_registry() {
  local dir="$WORK/registry-$1" port
  mkdir -p "$dir/data"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat >"$dir/config.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $dir/data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port, secret: bench}
YML
  /usr/bin/docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 200); do
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
      REG=127.0.0.1:$port
      return 0
    fi
    sleep 0.05
  done
  echo "docker-registry did not start: $(cat "$dir/log")" >&2
  return 1
}
