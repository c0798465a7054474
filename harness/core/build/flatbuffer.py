"""Bounds-checked FlatBuffer reading: the few fields the harness needs from .mnn and .tflite files.

Both formats are FlatBuffers (MNN.fbs, TFLite's schema.fbs). Reading a
field needs its table's vtable slot, and FlatBuffers only ever append fields
to a table, so a slot number holds for every version of a schema. A hostile
or truncated file raises the error its caller chose, never reads past the end.
"""

import struct
from typing import Callable, List, Optional


class FlatBuffer:
    """Access to one FlatBuffer's bytes; fail(what) makes the exception raised for a malformed file."""

    def __init__(self, data: bytes, fail: Callable[[str], Exception]):
        self.data, self.fail = data, fail

    def u32(self, offset: int) -> int:
        if not 0 <= offset <= len(self.data) - 4:
            raise self.fail(f"offset {offset} outside the file")
        return struct.unpack_from("<I", self.data, offset)[0]

    def i32(self, offset: int) -> int:
        if not 0 <= offset <= len(self.data) - 4:
            raise self.fail(f"offset {offset} outside the file")
        return struct.unpack_from("<i", self.data, offset)[0]

    def i8(self, offset: int) -> int:
        if not 0 <= offset < len(self.data):
            raise self.fail(f"offset {offset} outside the file")
        return struct.unpack_from("<b", self.data, offset)[0]

    def root(self) -> int:
        return self.indirect(0)

    def field(self, table: int, slot: int) -> Optional[int]:
        """Absolute position of a table's field, or None when the field is absent."""
        vtable = table - self.i32(table)
        if not 0 <= vtable <= len(self.data) - 4:
            raise self.fail("a vtable outside the file")
        vtable_size = struct.unpack_from("<H", self.data, vtable)[0]
        entry = 4 + 2 * slot
        if entry + 2 > vtable_size or vtable + entry + 2 > len(self.data):
            return None
        offset = struct.unpack_from("<H", self.data, vtable + entry)[0]
        return table + offset if offset else None

    def indirect(self, position: int) -> int:
        return position + self.u32(position)

    def string(self, position: int) -> str:
        start = self.indirect(position)
        length = self.u32(start)
        if start + 4 + length > len(self.data):
            raise self.fail("a string past the end")
        return self.data[start + 4:start + 4 + length].decode("utf-8", "replace")

    def vector(self, position: int) -> tuple:
        """(first element's position, count) of the vector a field points at."""
        start = self.indirect(position)
        count = self.u32(start)
        if count > (len(self.data) - start) // 4:
            raise self.fail("a vector longer than the file")
        return start + 4, count

    def tables(self, table: int, slot: int) -> List[int]:
        """The tables of a vector-of-tables field (empty when absent)."""
        position = self.field(table, slot)
        if position is None:
            return []
        first, count = self.vector(position)
        return [self.indirect(first + 4 * i) for i in range(count)]

    def strings(self, table: int, slot: int) -> List[str]:
        position = self.field(table, slot)
        if position is None:
            return []
        first, count = self.vector(position)
        return [self.string(first + 4 * i) for i in range(count)]

    def ints(self, table: int, slot: int) -> List[int]:
        position = self.field(table, slot)
        if position is None:
            return []
        first, count = self.vector(position)
        return [self.i32(first + 4 * i) for i in range(count)]
