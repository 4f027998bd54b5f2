"""Whether a Part 10 file's data set is whole: every element fits in the file, parsed to its end.

A truncated file (pixel data cut short) or a wrong element length makes a PACS
abort the association, which would take every instance sent with it down
too. Such files are refused where they come in (the outbox accepting them,
``kiosk store``), naming the file. Only the element headers are read, values
are skipped (pixel data is never decoded): under 50 microseconds for a small
image, and not much more for a 26 MB one.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from pathlib import Path

from kiosk.errors import KioskError
from kiosk.part10 import LONG_VRS, PREAMBLE, NotPart10Error
from kiosk.transfer_syntaxes import DEFLATED, EXPLICIT_BE, IMPLICIT_LE

UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = (0xFFFE, 0xE000), (0xFFFE, 0xE00D), (0xFFFE, 0xE0DD)
PIXEL_DATA = (0x7FE0, 0x0010)
WHOLE_READ = 1 << 20  # files up to this size are read at once; bigger ones are mapped (values never touched)
# (tag, 16-bit, 32-bit) readers per byte order
_ORDERS = {little: (struct.Struct(o + "HH"), struct.Struct(o + "H"), struct.Struct(o + "I"))
           for little, o in ((True, "<"), (False, ">"))}
HINT = "the file is damaged or was cut short; export or copy it again from where it came from"


class IncompleteDataSet(NotPart10Error):
    """The data set does not parse to the end of the file; the message says where it breaks."""

    def __init__(self, message: str) -> None:
        super().__init__(message, HINT)


def check_complete(source: Path | bytes, transfer_syntax: str) -> None:
    """Raise ``IncompleteDataSet`` unless the data set in ``source`` (a file, or its bytes) parses to its end.

    ``transfer_syntax``: the file's, from its meta information.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        _check(source, transfer_syntax)
        return
    try:
        handle = os.open(source, os.O_RDONLY)
        try:
            size = os.fstat(handle).st_size
            if size <= WHOLE_READ:
                data = os.read(handle, size)
            else:
                data = mmap.mmap(handle, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(handle)
    except OSError as exc:
        raise NotPart10Error(f"cannot read the file ({exc.strerror or exc})") from None
    try:
        _check(data, transfer_syntax)
    finally:
        if isinstance(data, mmap.mmap):
            data.close()


def check_written(path: Path, transfer_syntax: str, uid: str) -> None:
    """``check_complete`` for an object the kiosk wrote itself: a ``KioskError`` naming image ``uid``."""
    try:
        check_complete(path, transfer_syntax)
    except NotPart10Error as exc:
        raise KioskError(f"image {uid}: {exc.message}", exc.hint) from None


def _check(data: bytes | mmap.mmap, transfer_syntax: str) -> None:
    # The meta group is walked too (always Explicit VR Little Endian): its group length is not trusted.
    offset = _Walker(data, explicit=True, little=True).data_set(PREAMBLE + 4, len(data), group=0x0002)
    if transfer_syntax == DEFLATED.uid:
        try:
            data, offset = zlib.decompress(data[offset:], -zlib.MAX_WBITS), 0
        except zlib.error as exc:
            raise IncompleteDataSet(f"the deflated data set cannot be inflated ({exc})") from None
    if offset >= len(data):
        raise IncompleteDataSet("the file holds no data set after its meta information")
    _Walker(data, explicit=transfer_syntax != IMPLICIT_LE.uid, little=transfer_syntax != EXPLICIT_BE.uid).data_set(offset, len(data))


class _Walker:
    """Element headers of one encoding, checked against the bounds of what holds them."""

    def __init__(self, data: bytes | mmap.mmap, explicit: bool, little: bool) -> None:
        self.data = data
        self.explicit = explicit
        self.tag, self.u16, self.u32 = _ORDERS[little]

    def data_set(self, offset: int, end: int, *, delimited: bool = False, group: int | None = None) -> int:
        """Walk elements from ``offset`` to ``end``, to an Item Delimitation if ``delimited``, or while in ``group``."""
        data = self.data
        while offset < end:
            if offset + 8 > end:
                if not delimited and not any(data[offset:end]):
                    return end  # trailing zero padding
                raise IncompleteDataSet(f"the data set ends in the middle of an element (byte {offset})")
            tag = self.tag.unpack_from(data, offset)
            if group is not None and tag[0] != group:
                return offset
            if tag == ITEM_END:
                if delimited:
                    return offset + 8
                offset += 8  # a stray delimiter in a defined-length item: harmless
                continue
            vr = None
            if self.explicit and tag[0] != 0xFFFE:
                vr = bytes(data[offset + 4:offset + 6])
                if not (vr.isalpha() and vr.isupper()):
                    raise IncompleteDataSet(f"element {_name(tag)} at byte {offset} has no valid VR (is the data set "
                                            "encoded as its transfer syntax says?)")
                if vr in LONG_VRS:
                    if offset + 12 > end:
                        raise IncompleteDataSet(f"the data set ends in the middle of element {_name(tag)}")
                    length, offset = self.u32.unpack_from(data, offset + 8)[0], offset + 12
                else:
                    length, offset = self.u16.unpack_from(data, offset + 6)[0], offset + 8
            else:
                length, offset = self.u32.unpack_from(data, offset + 4)[0], offset + 8
            if length == UNDEFINED:
                fragments = tag == PIXEL_DATA or vr in (b"OB", b"OW")
                # PS3.5 6.2.2: an undefined-length UN holds its items in Implicit VR Little Endian.
                walker = _Walker(data, explicit=False, little=True) if vr == b"UN" else self
                offset = walker.items(offset, end, tag, fragments=fragments, delimited=True)
                continue
            if offset + length > end:
                raise IncompleteDataSet(f"element {_name(tag)} is {length} bytes long but only {end - offset} "
                                        f"bytes are left (at byte {offset})")
            if vr == b"SQ":
                self.items(offset, offset + length, tag, fragments=False, delimited=False)
            offset += length
        if delimited:
            raise IncompleteDataSet(f"the data set ends inside an item (no item delimiter, byte {offset})")
        return offset

    def items(self, offset: int, end: int, owner: tuple[int, int], *, fragments: bool, delimited: bool) -> int:
        """Walk the items of sequence (or encapsulated pixel data) ``owner``; where it ends."""
        data = self.data
        while offset < end:
            if offset + 8 > end:
                raise IncompleteDataSet(f"the data set ends in the middle of an item of {_name(owner)}")
            tag = self.tag.unpack_from(data, offset)
            length = self.u32.unpack_from(data, offset + 4)[0]
            offset += 8
            if tag == SEQUENCE_END and delimited:
                return offset
            if tag != ITEM:
                raise IncompleteDataSet(f"{_name(owner)} holds {_name(tag)} where an item should be (byte {offset - 8})")
            if length == UNDEFINED and not fragments:
                offset = self.data_set(offset, end, delimited=True)
                continue
            if length == UNDEFINED or offset + length > end:
                raise IncompleteDataSet(f"an item of {_name(owner)} is {length} bytes long but only {end - offset} "
                                        f"bytes are left (at byte {offset})")
            if not fragments:
                self.data_set(offset, offset + length)
            offset += length
        if delimited:
            raise IncompleteDataSet(f"the data set ends inside {_name(owner)} (no sequence delimiter)")
        return offset


def _name(tag: tuple[int, int]) -> str:
    return f"({tag[0]:04X},{tag[1]:04X})"
