# Writes special.tar: a FIFO, a character device, setuid/setgid/sticky
# modes, a read-only directory with a file inside, an empty file and a
# directory entry that comes after the files in it.
import io, tarfile

with tarfile.open("special.tar", "w", format=tarfile.PAX_FORMAT) as t:
    def add(name, kind=tarfile.REGTYPE, mode=0o644, data=b"", **kw):
        i = tarfile.TarInfo(name); i.type = kind; i.mode = mode; i.mtime = 1400000000
        for k, v in kw.items():
            setattr(i, k, v)
        if kind == tarfile.REGTYPE:
            i.size = len(data)
            t.addfile(i, io.BytesIO(data))
        else:
            t.addfile(i)
    add("fifo", tarfile.FIFOTYPE, 0o640)
    add("chardev", tarfile.CHRTYPE, 0o600, devmajor=1, devminor=3)
    add("setuid", mode=0o4755, data=b"#!/bin/sh\n")
    add("setgid-dir", tarfile.DIRTYPE, 0o2775)
    add("sticky", tarfile.DIRTYPE, 0o1777)
    add("ro/inner.txt", data=b"inner\n")
    add("ro", tarfile.DIRTYPE, 0o555)
    add("empty")
    add("owned", data=b"owned\n", uid=1001, gid=29)
