# Writes gnu.tar (GNU long name/link records) and pax.tar (PAX path/linkpath
# records) with names and link targets longer than the 100 bytes of ustar.
import io, tarfile

LONG_DIR = "d" * 60 + "/" + "e" * 70
LONG_FILE = LONG_DIR + "/" + "f" * 120 + ".txt"
LONG_TARGET = "../" * 3 + "t" * 150


def build(path, fmt):
    with tarfile.open(path, "w", format=fmt) as t:
        def add(info, data=None):
            info.mtime = 1600000000
            info.uid = info.gid = 0
            t.addfile(info, io.BytesIO(data) if data is not None else None)
        for d in ["d" * 60, LONG_DIR]:
            i = tarfile.TarInfo(d); i.type = tarfile.DIRTYPE; i.mode = 0o755; add(i)
        body = b"long name body\n"
        i = tarfile.TarInfo(LONG_FILE); i.size = len(body); i.mode = 0o644; add(i, body)
        i = tarfile.TarInfo(LONG_DIR + "/link-" + "l" * 100); i.type = tarfile.SYMTYPE; i.linkname = LONG_TARGET; add(i)
        i = tarfile.TarInfo("hard-" + "h" * 110); i.type = tarfile.LNKTYPE; i.linkname = LONG_FILE; add(i)
        i = tarfile.TarInfo("u" * 99); i.size = 3; i.mode = 0o600; add(i, b"99\n")
        i = tarfile.TarInfo("v" * 100); i.size = 4; i.mode = 0o600; add(i, b"100\n")
        i = tarfile.TarInfo("w" * 101); i.size = 4; i.mode = 0o600; add(i, b"101\n")


build("gnu.tar", tarfile.GNU_FORMAT)
build("pax.tar", tarfile.PAX_FORMAT)
