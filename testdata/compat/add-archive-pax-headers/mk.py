# Writes pax.tar: PAX records for a fractional mtime, ids above the ustar
# octal limit, user and group names that are not in the image, a comment, a
# charset record and a path that overrides the header's name.
import io, tarfile

with tarfile.open("pax.tar", "w", format=tarfile.PAX_FORMAT) as t:
    def add(info, data=None, pax=None):
        info.pax_headers = pax or {}
        t.addfile(info, io.BytesIO(data) if data is not None else None)
    i = tarfile.TarInfo("frac.txt"); i.size = 5; i.mtime = 1500000000.75; i.mode = 0o644
    add(i, b"frac\n", {"mtime": "1500000000.75"})
    i = tarfile.TarInfo("bigids.txt"); i.size = 4; i.mtime = 1500000000; i.mode = 0o640
    i.uid = 3000000; i.gid = 3000001; i.uname = "nobody-here"; i.gname = "nogroup-here"
    add(i, b"big\n")
    i = tarfile.TarInfo("names.txt"); i.size = 6; i.mtime = 1500000000; i.mode = 0o644
    i.uid = 1000; i.gid = 1001; i.uname = "svc"; i.gname = "app"
    add(i, b"names\n")
    i = tarfile.TarInfo("comment.txt"); i.size = 6; i.mtime = 1500000000; i.mode = 0o644
    add(i, b"xattr\n", {"comment": "a comment", "hdrcharset": "BINARY"})
    i = tarfile.TarInfo("dir"); i.type = tarfile.DIRTYPE; i.mode = 0o750; i.mtime = 1500000000
    add(i, None, {"comment": "directory"})
    i = tarfile.TarInfo("dir/in.txt"); i.size = 3; i.mtime = 1500000000; i.mode = 0o644
    add(i, b"in\n", {"path": "dir/renamed-by-pax.txt"})
