#!/usr/bin/env python3
"""Write the seed corpus of fuzz_kernel_loader (fuzz/corpus/fuzz_kernel_loader/):
tiny PVH ELFs (64- and 32-bit) and bzImage-like images whose headers pass
the loaders' checks (vmm/boot/pvh.c, vmm/boot/bzimage.c), so the fuzzer
starts past the magic checks. The fuzzer's guest has 32 MiB of RAM; an
odd-sized input also passes its last quarter as an initrd."""
import os
import struct
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "fuzz_kernel_loader")
LOAD = 0x100000


def note(name, ntype, desc):
    n = name + b"\0"
    pad = lambda b: b + b"\0" * (-len(b) % 4)
    return struct.pack("<III", len(n), len(desc), ntype) + pad(n) + pad(desc)


def elf64(entry_desc, code=b"\xf4" * 16, bss=0x1000, extra_note=b""):
    notes = extra_note + note(b"Xen", 18, entry_desc)
    ehsz, phsz = 64, 56
    phoff = ehsz
    notes_off = phoff + 2 * phsz
    code_off = notes_off + len(notes)
    eh = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
    eh += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, LOAD, phoff, 0, 0, ehsz, phsz, 2, 64, 0, 0)
    ph_note = struct.pack("<IIQQQQQQ", 4, 4, notes_off, 0, 0, len(notes), len(notes), 4)
    ph_load = struct.pack("<IIQQQQQQ", 1, 5, code_off, LOAD, LOAD, len(code), len(code) + bss, 16)
    return eh + ph_note + ph_load + notes + code


def elf32(entry, code=b"\xf4" * 16):
    notes = note(b"Xen", 18, struct.pack("<I", entry))
    ehsz, phsz = 52, 32
    phoff = ehsz
    notes_off = phoff + 2 * phsz
    code_off = notes_off + len(notes)
    eh = b"\x7fELF" + bytes([1, 1, 1, 0]) + b"\0" * 8
    eh += struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, entry, phoff, 0, 0, ehsz, phsz, 2, 40, 0, 0)
    ph_note = struct.pack("<IIIIIIII", 4, notes_off, 0, 0, len(notes), len(notes), 4, 4)
    ph_load = struct.pack("<IIIIIIII", 1, code_off, LOAD, LOAD, len(code), len(code), 5, 16)
    return eh + ph_note + ph_load + notes + code


def bzimage(setup_sects=1, version=0x020F, relocatable=1, pref=0x1000000, init_size=0x2000,
            align=0x200000, payload=0x400, cmdline_size=0x7FF, xlf=1):
    setup = (setup_sects or 4) + 1
    img = bytearray(setup * 512 + payload)
    img[0x1F1] = setup_sects
    struct.pack_into("<H", img, 0x1FE, 0xAA55)
    img[0x200] = 0xEB
    img[0x201] = 0x268 - 0x202 + 0x10          # header end past 2.12's handover_offset
    struct.pack_into("<I", img, 0x202, 0x53726448)  # "HdrS"
    struct.pack_into("<H", img, 0x206, version)
    img[0x211] = 0x01                          # LOADED_HIGH
    struct.pack_into("<I", img, 0x214, LOAD)
    struct.pack_into("<I", img, 0x22C, 0x7FFFFFFF)  # initrd_addr_max
    struct.pack_into("<I", img, 0x230, align)
    img[0x234] = relocatable
    struct.pack_into("<H", img, 0x236, xlf)
    struct.pack_into("<I", img, 0x238, cmdline_size)
    struct.pack_into("<Q", img, 0x258, pref)
    struct.pack_into("<I", img, 0x260, init_size)
    for i in range(setup * 512, len(img)):
        img[i] = 0xF4
    return bytes(img)


SEEDS = {
    "pvh64": elf64(struct.pack("<I", LOAD)),
    "pvh64_desc8_two_notes": elf64(struct.pack("<Q", LOAD + 8), extra_note=note(b"GNU", 3, b"\1" * 20)),
    "pvh32": elf32(LOAD),
    "bzimage": bzimage(),
    "bzimage_relocate": bzimage(pref=0x40000000, align=0x100000),
    "bzimage_fixed_sects0": bzimage(setup_sects=0, relocatable=0, pref=0x200000),
    "bzimage_small_cmdline": bzimage(cmdline_size=8, init_size=0x100000),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in SEEDS.items():
        # Even size: no initrd. The "_initrd" twin is padded to an odd size.
        if len(data) % 2:
            data += b"\0"
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        with open(os.path.join(OUT, name + "_initrd"), "wb") as f:
            f.write(data + b"INITRD" * 40 + b"!")
    return 0


if __name__ == "__main__":
    sys.exit(main())
