#!/usr/bin/env python3
"""Writes a docker-save archive of random (incompressible) data.

    gen_image.py OUT.tar SIZE_MB LAYERS TAG

LAYERS layers, SIZE_MB in total, 16 MiB files, mtime 0: the spec is this
script; no binary is committed. Used by bench_save_load.sh and bench_build.sh.
"""
import hashlib, io, json, os, sys, tarfile

out, size_mb, layers, tag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
work = os.path.dirname(os.path.abspath(out))
per_layer = size_mb * 1024 * 1024 // layers
chunk = 16 * 1024 * 1024
diff_ids, names = [], []
for i in range(layers):
    path = os.path.join(work, f"gen-layer{i}.tar")
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        left, n = per_layer, 0
        while left > 0:
            size = min(chunk, left)
            info = tarfile.TarInfo(f"data/layer{i}/file{n:04d}")
            info.size, info.mode, info.mtime = size, 0o644, 0
            t.addfile(info, io.BytesIO(os.urandom(size)))
            left -= size
            n += 1
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    diff_ids.append("sha256:" + h.hexdigest())
    names.append(path)
config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
                     "config": {"Cmd": ["/bin/sh"]},
                     "rootfs": {"type": "layers", "diff_ids": diff_ids},
                     "history": [{"created_by": f"layer {i}"} for i in range(layers)]},
                    sort_keys=True, separators=(",", ":")).encode()
cfg_hex = hashlib.sha256(config).hexdigest()
manifest = json.dumps([{"Config": f"{cfg_hex}.json", "RepoTags": [tag],
                        "Layers": [f"{d[7:]}/layer.tar" for d in diff_ids]}]).encode()
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
    for d, path in zip(diff_ids, names):
        t.add(path, arcname=f"{d[7:]}/layer.tar")
        os.unlink(path)
    for name, data in ((f"{cfg_hex}.json", config), ("manifest.json", manifest)):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
