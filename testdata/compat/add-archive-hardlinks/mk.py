# Writes links.tar: a file with hardlinks in the same and another directory,
# a chain (a link to a link), and a hardlink to a file in a subdirectory.
import io, tarfile

with tarfile.open("links.tar", "w", format=tarfile.PAX_FORMAT) as t:
    def add(name, kind=tarfile.REGTYPE, data=b"", link=""):
        i = tarfile.TarInfo(name); i.type = kind; i.mode = 0o644; i.mtime = 1400000000; i.linkname = link
        if kind == tarfile.REGTYPE:
            i.size = len(data)
            t.addfile(i, io.BytesIO(data))
        else:
            t.addfile(i)
    add("orig.txt", data=b"original\n")
    add("same-dir.txt", tarfile.LNKTYPE, link="orig.txt")
    add("sub", tarfile.DIRTYPE)
    add("sub/other-dir.txt", tarfile.LNKTYPE, link="orig.txt")
    add("sub/deep.txt", data=b"deep\n")
    add("to-deep.txt", tarfile.LNKTYPE, link="sub/deep.txt")
    add("chain.txt", tarfile.LNKTYPE, link="same-dir.txt")
