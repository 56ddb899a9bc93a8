from __future__ import annotations

from google.protobuf.message import DecodeError

from tessera.core import ValidationError
from tessera.proto.ratelimit.v1 import ratelimit_pb2 as pb

# A CheckRequest (or PeekRequest: the same fields 1 and 2) read straight from its wire bytes.
# The servicer keys its parsed descriptors by their wire bytes; letting gRPC parse the request
# into messages and then serializing each descriptor back costs about three times slicing the
# bytes here. Anything this reader does not expect goes to protobuf's parser instead, which
# gives the same fields or rejects the bytes (INVALID_ARGUMENT naming `request`, where gRPC's own
# deserializer would have answered INTERNAL).

_DOMAIN = 1  # string domain
_DESCRIPTORS = 2  # repeated Descriptor descriptors
_HITS = 3  # uint32 hits (CheckRequest only)
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
_UINT32 = (1 << 32) - 1
_FIELD_NUMBERS = 1 << 29  # field numbers are below it
#: What `_varint` returns for a varint longer than ten bytes: a position past any end.
_TOO_LONG = (0, 1 << 62)


def split_check_request(data: bytes) -> tuple[str, list[bytes], int]:
    """Return a CheckRequest's domain, the wire bytes of each descriptor, and its hits.

    Fields may come in any order, repeated singular fields keep their last value, and unknown
    fields are skipped, as protobuf's parser does. A PeekRequest reads the same (hits 0).

    Raises:
        ValidationError: The bytes are not a CheckRequest (field `request`).

    """
    try:
        split = _split(data)
    except (IndexError, UnicodeDecodeError):  # truncated, or a domain that is not UTF-8
        split = None
    if split is None:
        try:
            message = pb.CheckRequest.FromString(data)
        except DecodeError as error:
            raise ValidationError.for_field(
                "request", f"not a serialized request message: {error}"
            ) from error
        descriptors = [descriptor.SerializeToString() for descriptor in message.descriptors]
        return message.domain, descriptors, message.hits
    return split


def _split(data: bytes) -> tuple[str, list[bytes], int] | None:
    # None for bytes left to protobuf's parser.
    domain = b""
    descriptors = []
    hits = 0
    position, end = 0, len(data)
    while position < end:
        key = data[position]
        if key < 0x80:
            position += 1
        else:
            key, position = _varint(data, position)
            if key >> 3 >= _FIELD_NUMBERS:
                return None
        if key < 8:  # field number 0 does not exist
            return None
        wire_type = key & 7
        if wire_type == _LENGTH:
            size = data[position]
            if size < 0x80:
                position += 1
            else:
                size, position = _varint(data, position)
            start, position = position, position + size
            if position > end:
                return None
            if key >> 3 == _DESCRIPTORS:
                descriptors.append(data[start:position])
            elif key >> 3 == _DOMAIN:
                domain = data[start:position]
        elif wire_type == _VARINT:
            value, position = _varint(data, position)
            if key >> 3 == _HITS:
                hits = value & _UINT32  # protobuf keeps a uint32's low 32 bits
        elif wire_type == _FIXED64:
            position += 8
        elif wire_type == _FIXED32:
            position += 4
        else:  # groups, or not a wire type at all
            return None
        if position > end:
            return None
    return domain.decode(), descriptors, hits


def _varint(data: bytes, position: int) -> tuple[int, int]:
    # The varint at `position` and the position after it (IndexError when truncated).
    value = shift = 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
        if shift >= 70:
            return _TOO_LONG
