"""Writes a tar (argv[1]) holding a symlink, a fifo and a file, each with a
second name as a hardlink entry."""
import io
import sys
import tarfile


def add(tf, name, kind, link="", data=b""):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mtime = 1600000000
    ti.mode = 0o644
    ti.linkname = link
    ti.size = len(data)
    tf.addfile(ti, io.BytesIO(data) if data else None)


with tarfile.open(sys.argv[1], "w", format=tarfile.GNU_FORMAT) as tf:
    add(tf, "a-file", tarfile.REGTYPE, data=b"body\n")
    add(tf, "a-link", tarfile.SYMTYPE, link="a-file")
    add(tf, "a-pipe", tarfile.FIFOTYPE)
    add(tf, "b-file", tarfile.LNKTYPE, link="a-file")
    add(tf, "b-link", tarfile.LNKTYPE, link="a-link")
    add(tf, "b-pipe", tarfile.LNKTYPE, link="a-pipe")
