"""A reader for the numeric arrays of MATLAB level-5 ``.mat`` files (what SVHN ships), without scipy.

Format (MathWorks, "MAT-File Format", level 5): a 128-byte header (text, subsystem offset, version, endian
indicator 'MI'), then data elements, each an 8-byte tag (type, byte count) and its data padded to 8 bytes. A
"small" element packs type and count into the first 4 bytes and its data into the next 4. ``miCOMPRESSED``
elements are zlib streams holding one more element; ``miMATRIX`` elements hold array flags, dimensions, a name
and the real part. Arrays are stored column-major. Only numeric, real, full (not sparse/cell/struct) arrays are
read, which is all SVHN uses; anything else is skipped.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

MI_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
MI_MATRIX, MI_COMPRESSED = 14, 15
# mxCLASS -> numpy type of the array (data may be stored in a smaller type; MATLAB does that to save space).
MX_CLASSES = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4", 14: "i8", 15: "u8"}


class MatFileError(ValueError):
    """The bytes are not a level-5 MAT file this reader understands."""


def _element(buf: bytes, pos: int, order: str) -> tuple[int, bytes, int]:
    """(type, data, next position) of the data element at ``pos``."""
    if pos + 8 > len(buf):
        raise MatFileError(f"truncated: a data element tag at byte {pos} runs past the end ({len(buf)} bytes)")
    first, second = struct.unpack_from(f"{order}II", buf, pos)
    if first >> 16:  # small data element: count in the upper 16 bits, data in the next 4 bytes
        return first & 0xFFFF, buf[pos + 4 : pos + 4 + (first >> 16)], pos + 8
    end = pos + 8 + second
    if end > len(buf):
        raise MatFileError(f"truncated: an element at byte {pos} promises {second} bytes, {len(buf) - pos - 8} remain")
    padded = end if first == MI_COMPRESSED else end + (-second % 8)
    return first, buf[pos + 8 : end], padded


def _matrix(body: bytes, order: str) -> tuple[str, np.ndarray] | None:
    _, flags, pos = _element(body, 0, order)
    mx_class = struct.unpack_from(f"{order}I", flags)[0] & 0xFF
    complex_flag = struct.unpack_from(f"{order}I", flags)[0] & 0x800
    _, dims_raw, pos = _element(body, pos, order)
    dims = np.frombuffer(dims_raw, dtype=f"{order}i4")
    _, name, pos = _element(body, pos, order)
    if mx_class not in MX_CLASSES or complex_flag:
        return None  # cell, struct, char, sparse, complex: not needed here
    data_type, data, _ = _element(body, pos, order)
    if data_type not in MI_TYPES:
        raise MatFileError(f"array {name.decode(errors='replace')!r} has unknown storage type {data_type}")
    values = np.frombuffer(data, dtype=f"{order}{MI_TYPES[data_type]}")
    if values.size != int(np.prod(dims)):
        raise MatFileError(f"array {name.decode(errors='replace')!r} holds {values.size} values, not {dims.tolist()}")
    array = values.astype(MX_CLASSES[mx_class]).reshape(tuple(dims), order="F")
    return name.decode("ascii", errors="replace"), array


def read_mat(path: Path) -> dict[str, np.ndarray]:
    """Every numeric array of a level-5 MAT file, by variable name, in MATLAB's shape."""
    buf = path.read_bytes()
    if len(buf) < 128:
        raise MatFileError(f"only {len(buf)} bytes: shorter than the 128-byte MAT header")
    if buf[126:128] == b"IM":
        order = "<"
    elif buf[126:128] == b"MI":
        order = ">"
    else:
        hint = " (MATLAB v7.3 files are HDF5; save with -v7)" if buf[:8] == b"\x89HDF\r\n\x1a\n" else ""
        raise MatFileError(f"no level-5 MAT header (endian indicator {buf[126:128]!r}){hint}")
    arrays: dict[str, np.ndarray] = {}
    pos = 128
    while pos < len(buf):
        kind, data, pos = _element(buf, pos, order)
        if kind == MI_COMPRESSED:
            try:
                data = zlib.decompress(data)
            except zlib.error as exc:
                raise MatFileError(f"a compressed element is corrupt ({exc})") from exc
            kind, data, _ = _element(data, 0, order)
        if kind == MI_MATRIX:
            found = _matrix(data, order)
            if found is not None:
                arrays[found[0]] = found[1]
    return arrays
