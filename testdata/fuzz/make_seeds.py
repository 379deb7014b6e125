#!/usr/bin/env python3
"""Writes the hand-made seed inputs of the fuzz targets (scripts/fuzz).

    testdata/fuzz/make_seeds.py [CONFORMANCE_DIR]

Each target's corpus is testdata/fuzz/<target>/. This script (re)writes the
files named seed-* there; inputs that scripts/fuzz --keep merged in (named
by their SHA-1) and crash reproducers (crash-*) are left alone.

  parse_fuzz         the BuildKit parser conformance Dockerfiles (copied from
                     CONFORMANCE_DIR, default ../shared/conformance/buildkit)
                     and a few Dockerfiles of testdata/compat
  tar_fuzz           small layer tars made here with Python's tarfile; the
                     first byte picks the whiteout mode ('0' merged,
                     '1' overlay lower)
  image_json_fuzz    manifests, indexes, configs and docker-save manifest.json
                     files; the first byte picks the document ('0' manifest,
                     '1' index, '2' config, '3' docker-save manifest.json)
  dockerignore_fuzz  .dockerignore files, then a NUL byte and paths to match
"""

import gzip
import io
import json
import os
import sys
import tarfile

# Layer tars end right after the end marker (no padding to 10 KiB records).
tarfile.RECORDSIZE = tarfile.BLOCKSIZE

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def parser_seeds(conformance):
    base = os.path.join(conformance, "parser")
    for sub in ("testfiles", "testfiles-negative"):
        d = os.path.join(base, sub)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            path = os.path.join(d, name, "Dockerfile")
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    write("parse_fuzz", name, f.read())
    compat = os.path.join(ROOT, "testdata", "compat")
    for name in ("arg-env-precedence", "copy-exclude", "heredoc-forms", "onbuild-heredoc", "multistage-copy-from",
                 "run-mount-cache", "healthcheck", "cmd-shell-form", "run-mount-secret"):
        path = os.path.join(compat, name, "Dockerfile")
        if os.path.isfile(path):
            with open(path, "rb") as f:
                write("parse_fuzz", "compat-" + name, f.read())


def tar_bytes(members, fmt=tarfile.PAX_FORMAT, compress=False):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for info, body in members:
            info.mtime = 1700000000
            t.addfile(info, io.BytesIO(body) if body is not None else None)
    data = buf.getvalue()
    if compress:
        data = gzip.compress(data, mtime=0)
    return data


def entry(name, kind=tarfile.REGTYPE, body=b"", mode=0o644, link="", uid=0, gid=0, pax=None):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid = uid
    info.gid = gid
    info.linkname = link
    if pax:
        info.pax_headers = pax
    if kind == tarfile.REGTYPE:
        info.size = len(body)
        return info, body
    return info, None


def tar_seeds():
    d = tarfile.DIRTYPE
    s = tarfile.SYMTYPE
    h = tarfile.LNKTYPE
    cases = {
        "files": [entry("etc/", d, mode=0o755), entry("etc/hostname", body=b"fuzz\n"),
                  entry("bin/", d, mode=0o755), entry("bin/sh", body=b"#!/bin/sh\n", mode=0o755)],
        "symlinks": [entry("usr/", d), entry("usr/lib/", d), entry("lib", s, link="usr/lib"),
                     entry("lib/libc.so", body=b"ELF"), entry("abs", s, link="/etc/passwd")],
        "hardlinks": [entry("a", body=b"same"), entry("b", h, link="a"), entry("dir/", d),
                      entry("dir/c", h, link="a")],
        "whiteouts": [entry("etc/", d), entry("etc/.wh.passwd"), entry("var/", d),
                      entry("var/cache/", d), entry("var/cache/.wh..wh..opq"), entry("var/cache/new", body=b"n")],
        "escape-dotdot": [entry("../outside", body=b"x"), entry("a/../../b", body=b"y")],
        "escape-symlink": [entry("up", s, link="../.."), entry("up/outside", body=b"x")],
        "escape-abs-symlink-dir": [entry("root", s, link="/"), entry("root/tmp/x", body=b"x")],
        "modes": [entry("setuid", body=b"s", mode=0o4755), entry("sticky/", d, mode=0o1777),
                  entry("owned", body=b"o", uid=1000, gid=1000), entry("fifo", tarfile.FIFOTYPE)],
        "long-names": [entry("d/" + "n" * 150 + "/" + "m" * 120, body=b"long"),
                       entry("l", s, link="t" * 200)],
        "xattrs": [entry("cap", body=b"c", pax={"SCHILY.xattr.user.test": "v",
                                                  "SCHILY.xattr.security.capability": "\x01\x00\x00\x02"})],
        "replace-dir-with-file": [entry("x/", d), entry("x/y", body=b"1"), entry("x", body=b"file now")],
        "replace-file-with-dir": [entry("x", body=b"file"), entry("x/", d), entry("x/y", body=b"2")],
        "whiteout-then-add": [entry(".wh.x"), entry("x", body=b"back")],
    }
    for name, members in cases.items():
        write("tar_fuzz", name, b"0" + tar_bytes(members))
        write("tar_fuzz", name + "-overlay", b"1" + tar_bytes(members))
    write("tar_fuzz", "gnu-format", b"0" + tar_bytes(cases["long-names"], fmt=tarfile.GNU_FORMAT))
    write("tar_fuzz", "ustar-format", b"1" + tar_bytes(cases["files"], fmt=tarfile.USTAR_FORMAT))
    write("tar_fuzz", "gzip", b"0" + tar_bytes(cases["whiteouts"], compress=True))
    write("tar_fuzz", "empty", b"0" + tar_bytes([]))


def digest(c):
    return "sha256:" + (c * 64)[:64]


def json_seeds():
    oci_manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest("a"), "size": 581},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest("b"), "size": 2152262},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest("c"), "size": 10240,
             "annotations": {"org.opencontainers.image.title": "layer.tar"}},
        ],
        "annotations": {"org.opencontainers.image.created": "2024-01-02T03:04:05Z"},
    }
    docker_manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": digest("d"),
                   "size": 1470},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": digest("e"),
                    "size": 3408729, "urls": ["https://example.com/layer"]}],
    }
    artifact = dict(oci_manifest, artifactType="application/vnd.example+type",
                    subject={"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest("f"),
                             "size": 100})
    write("image_json_fuzz", "manifest-oci", "0" + json.dumps(oci_manifest, indent=2))
    write("image_json_fuzz", "manifest-docker", "0" + json.dumps(docker_manifest))
    write("image_json_fuzz", "manifest-artifact", "0" + json.dumps(artifact))
    write("image_json_fuzz", "manifest-schema1", '0{"schemaVersion":1,"name":"library/busybox","tag":"latest",'
                                                  '"fsLayers":[{"blobSum":"' + digest("1") + '"}]}')
    write("image_json_fuzz", "manifest-bad-digest", '0{"schemaVersion":2,"config":{"digest":"sha512:00","size":1},'
                                                     '"layers":[]}')

    platforms = [("linux", "amd64", None), ("linux", "arm", "v7"), ("linux", "arm64", "v8"),
                 ("windows", "amd64", None)]
    manifests = []
    for i, (os_, arch, variant) in enumerate(platforms):
        p = {"os": os_, "architecture": arch}
        if variant:
            p["variant"] = variant
        if os_ == "windows":
            p["os.version"] = "10.0.17763.5329"
            p["os.features"] = ["win32k"]
        manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest("0123"[i]),
                          "size": 480 + i, "platform": p})
    oci_index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}
    write("image_json_fuzz", "index-oci", "1" + json.dumps(oci_index, indent=3))
    docker_list = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
                   "manifests": [dict(m, mediaType="application/vnd.docker.distribution.manifest.v2+json")
                                 for m in manifests[:2]]}
    write("image_json_fuzz", "index-docker", "1" + json.dumps(docker_list))
    layout_index = {"schemaVersion": 2, "manifests": [
        dict(manifests[0], annotations={"io.containerd.image.name": "docker.io/library/busybox:latest",
                                        "org.opencontainers.image.ref.name": "latest"})]}
    write("image_json_fuzz", "index-layout", "1" + json.dumps(layout_index))
    attestation = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        manifests[0],
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest("9"), "size": 840,
         "platform": {"architecture": "unknown", "os": "unknown"},
         "annotations": {"vnd.docker.reference.digest": digest("0"), "vnd.docker.reference.type":
                         "attestation-manifest"}}]}
    write("image_json_fuzz", "index-attestation", "1" + json.dumps(attestation))

    config = {
        "architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05.123456789Z", "author": "fuzz",
        "config": {
            "User": "1000:1000", "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                         "LANG=C.UTF-8"],
            "Entrypoint": ["/docker-entrypoint.sh"], "Cmd": ["nginx", "-g", "daemon off;"],
            "WorkingDir": "/srv", "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
            "Volumes": {"/data": {}}, "Labels": {"maintainer": "someone", "org.opencontainers.image.version": "1"},
            "StopSignal": "SIGQUIT", "Shell": ["/bin/bash", "-c"], "OnBuild": ["RUN echo hi"],
            "Healthcheck": {"Test": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"], "Interval": 30000000000,
                            "Timeout": 5000000000, "StartPeriod": 0, "Retries": 3},
            "ArgsEscaped": True,
        },
        "rootfs": {"type": "layers", "diff_ids": [digest("a"), digest("b")]},
        "history": [
            {"created": "2024-01-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:abc in / "},
            {"created": "2024-01-02T00:00:00Z", "created_by": "CMD [\"sh\"]", "empty_layer": True,
             "comment": "buildkit.dockerfile.v0"},
        ],
    }
    write("image_json_fuzz", "config-full", "2" + json.dumps(config, indent=2))
    write("image_json_fuzz", "config-minimal", '2{"architecture":"arm64","variant":"v8","os":"linux",'
                                                '"rootfs":{"type":"layers","diff_ids":[]}}')
    write("image_json_fuzz", "config-windows", "2" + json.dumps({
        "architecture": "amd64", "os": "windows", "os.version": "10.0.17763.5329", "os.features": ["win32k"],
        "rootfs": {"type": "layers", "diff_ids": [digest("7")]}, "config": {"Cmd": ["cmd"]}}))
    write("image_json_fuzz", "config-extra-fields", "2" + json.dumps({
        "architecture": "amd64", "os": "linux", "container": "abc", "docker_version": "24.0.7",
        "container_config": {"Hostname": "abc", "Cmd": ["/bin/sh"]}, "moby.buildkit.buildinfo.v1": "e30=",
        "rootfs": {"type": "layers", "diff_ids": [digest("8")]}, "config": {"Env": None, "Cmd": None}}))
    write("image_json_fuzz", "config-bad-rootfs", '2{"rootfs":{"type":"squash","diff_ids":["x"]}}')

    save = [{"Config": "config.json", "RepoTags": ["busybox:latest", "localhost:5000/a/b:v1"],
             "Layers": ["layer.tar"]}]
    write("image_json_fuzz", "docker-save", "3" + json.dumps(save))
    write("image_json_fuzz", "docker-save-untagged", "3" + json.dumps([{"Config": "config.json", "RepoTags": None,
                                                                         "Layers": ["layer.tar"]}]))
    write("image_json_fuzz", "docker-save-two", "3" + json.dumps(save + [{"Config": "./config.json",
                                                                          "RepoTags": ["other:1"],
                                                                          "Layers": ["./layer.tar"]}]))
    write("image_json_fuzz", "docker-save-escape", "3" + json.dumps([{"Config": "../config.json",
                                                                       "Layers": ["/layer.tar"]}]))
    write("image_json_fuzz", "docker-save-missing", "3" + json.dumps([{"Config": "nope.json", "Layers": []}]))
    write("image_json_fuzz", "docker-save-bad-tag", "3" + json.dumps([{"Config": "config.json",
                                                                        "RepoTags": ["UPPER:latest"],
                                                                        "Layers": ["layer.tar"]}]))


def dockerignore_seeds():
    cases = {
        "node": ("# comment\nnode_modules\n*.log\n!important.log\n.git\n",
                 ["node_modules/x/index.js", "a.log", "important.log", "src/a.log", ".git/HEAD", "src/main.js"]),
        "doublestar": ("**/*.o\n**/build\n!**/build/keep\nvendor/**\n",
                       ["a/b/c.o", "c.o", "x/build/out", "build/keep", "vendor", "vendor/a/b"]),
        "classes": ("[a-c]*.txt\n[^x]?.md\n\\*literal\nfile[\\]]\n",
                    ["b1.txt", "d.txt", "ab.md", "xb.md", "*literal", "file]"]),
        "clean": ("/abs\n./dot/../rel\n  spaced  \n!\n.\n//double//slash/\n",
                  ["abs", "rel", "spaced", "double/slash", "dot"]),
        "bom-crlf": ("\ufeff*.tmp\r\n!keep.tmp\r\n#x\r\n", ["a.tmp", "keep.tmp", "#x"]),
        "exceptions-nested": ("*\n!src\nsrc/**/*.test.js\n!src/keep.test.js\n",
                              ["README.md", "src/a.js", "src/x/a.test.js", "src/keep.test.js"]),
        "invalid": ("ok\n[unterminated\n", []),
        "invalid-escape": ("trailing\\", []),
        "dotdot": ("../outside\n!../x\n", ["x", "outside"]),
        "dockerfile": ("Dockerfile\n.dockerignore\n*/temp*\n*/*/temp*\ntemp?\n",
                       ["Dockerfile", "somedir/temporary.txt", "somedir/subdir/temp.txt", "temp1", "temp12"]),
    }
    for name, (text, paths) in cases.items():
        write("dockerignore_fuzz", name, text + ("\0" + "\n".join(paths) if paths else ""))


def main():
    conformance = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "conformance",
                                                                       "buildkit")
    parser_seeds(conformance)
    tar_seeds()
    json_seeds()
    dockerignore_seeds()


if __name__ == "__main__":
    main()
