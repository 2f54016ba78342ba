#!/usr/bin/env python3
"""The known pattern behind the ivshmem-plain BAR, and its generator.

The 32-bit little-endian word at byte offset o of the backing file is
    mix(o >> 12) ^ (o & 0xfff),  mix(p) = (p * 0x9E3779B1) mod 2**32,
so a wrong page frame and a wrong offset inside a page both read back a
wrong value.  Tools that check it (tools/vfio-dmabuf) use the same formula.
"""
import os
import sys

PAGE = 4096


def word(offset: int) -> int:
    return (((offset >> 12) * 0x9E3779B1) & 0xFFFFFFFF) ^ (offset & 0xFFF)


def write(path: str, size: int) -> None:
    lanes = PAGE // 4
    # All in-page offsets, one per 32-bit lane, as one big integer; each
    # page XORs its mix() into every lane at once.
    template = int.from_bytes(b"".join((o * 4).to_bytes(4, "little") for o in range(lanes)), "little")
    ones = int.from_bytes(b"\x01\x00\x00\x00" * lanes, "little")
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        for p in range(size // PAGE):
            mix = (p * 0x9E3779B1) & 0xFFFFFFFF
            f.write((template ^ (mix * ones)).to_bytes(PAGE, "little"))
    os.replace(tmp, path)


if __name__ == "__main__":
    write(sys.argv[1], int(sys.argv[2]))
