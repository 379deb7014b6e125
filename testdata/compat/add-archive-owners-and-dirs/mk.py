# Writes tree.tar: entries owned by ids that exist and do not exist in the
# image, a directory that already exists in the image (its mode and owner
# come from the archive), a directory given twice with different modes, and
# a file whose parent directories have no entries.
import io, tarfile

with tarfile.open("tree.tar", "w", format=tarfile.PAX_FORMAT) as t:
    def add(name, kind=tarfile.REGTYPE, mode=0o644, data=b"", uid=0, gid=0):
        i = tarfile.TarInfo(name); i.type = kind; i.mode = mode; i.mtime = 1400000000; i.uid = uid; i.gid = gid
        if kind == tarfile.REGTYPE:
            i.size = len(data)
            t.addfile(i, io.BytesIO(data))
        else:
            t.addfile(i)
    add("existing", tarfile.DIRTYPE, 0o755, uid=1000, gid=1000)
    add("existing/new.txt", data=b"new\n", uid=1000, gid=1000)
    add("twice", tarfile.DIRTYPE, 0o700)
    add("twice/a.txt", data=b"a\n", uid=4242, gid=4343)
    add("twice", tarfile.DIRTYPE, 0o751, uid=1001, gid=1001)
    add("nested/deep/file.txt", data=b"deep\n", uid=1000, gid=29)
