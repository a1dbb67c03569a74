"""ELF files just real enough for the builds' checks: the machine and the program headers."""

PT_INTERP = 3


def fake_elf(e_machine: int, static: bool = True, payload: bytes = b"") -> bytes:
    """A 64-bit little-endian ELF header; a dynamic one has a PT_INTERP program header."""
    phnum = 0 if static else 1
    header = (
        b"\x7fELF\x02\x01\x01\x00"
        + bytes(8)
        + (2).to_bytes(2, "little")  # e_type EXEC
        + e_machine.to_bytes(2, "little")
        + (1).to_bytes(4, "little")  # e_version
        + bytes(8)  # e_entry
        + (64).to_bytes(8, "little")  # e_phoff: program headers right after this header
        + bytes(8)  # e_shoff
        + bytes(4)  # e_flags
        + (64).to_bytes(2, "little")  # e_ehsize
        + (56).to_bytes(2, "little")  # e_phentsize
        + phnum.to_bytes(2, "little")
        + bytes(6)  # e_shentsize, e_shnum, e_shstrndx
    )
    program_headers = b"" if static else PT_INTERP.to_bytes(4, "little") + bytes(52)
    return header + program_headers + payload
