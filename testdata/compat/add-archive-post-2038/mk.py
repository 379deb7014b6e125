# Writes times.tar: mtimes past 2038 (32-bit time_t), past the 8^11 octal
# limit of ustar (in a PAX record), and a directory dated 2100.
import io, tarfile

with tarfile.open("times.tar", "w", format=tarfile.PAX_FORMAT) as t:
    def add(name, mtime, data=b"x\n", kind=tarfile.REGTYPE):
        i = tarfile.TarInfo(name); i.mtime = mtime; i.type = kind
        i.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        if kind == tarfile.REGTYPE:
            i.size = len(data)
            t.addfile(i, io.BytesIO(data))
        else:
            t.addfile(i)
    add("y2038.txt", 2147483648)
    add("y2100.txt", 4102444800)
    add("octal-limit.txt", 8589934592)
    add("dir2100", 4102444800, kind=tarfile.DIRTYPE)
    add("dir2100/in.txt", 2500000000)
