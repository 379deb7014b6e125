"""Writes a PAX tar whose entries carry times before 1970, at the epoch, past
2038 and past 2262 (argv[1])."""
import io
import sys
import tarfile

TIMES = {"before-1970": -31536000, "epoch": 0, "in-1971": 31536000, "after-2038": 2200000000,
         "after-2262": 17179869184}


def add(tf, name, kind, mtime, data=b"", link=""):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mtime = mtime
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    ti.linkname = link
    ti.size = len(data)
    tf.addfile(ti, io.BytesIO(data) if data else None)


with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as tf:
    for label, t in TIMES.items():
        add(tf, label + "/", tarfile.DIRTYPE, t)
        add(tf, label + "/file.txt", tarfile.REGTYPE, t, (label + "\n").encode())
        add(tf, label + "/link", tarfile.SYMTYPE, t, link="file.txt")
