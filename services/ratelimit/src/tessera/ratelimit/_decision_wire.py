from __future__ import annotations

import math
from collections.abc import Sequence

from tessera.proto.ratelimit.v1 import ratelimit_pb2 as pb
from tessera.ratelimit._config import RateLimitRule
from tessera.ratelimit._decider import Verdict
from tessera.ratelimit._decision_message import decision_message, template_message

# A Check response written as protobuf wire bytes, for a pass-through response serializer.
# Building a Decision message per descriptor (add, merge a template, write three fields and a
# Duration through protobuf's Python API) and then serializing it costs about 1.9 µs a
# decision on the shared test machine; joining a template's bytes with the few fields that vary
# costs about 1.3 µs.
# Protobuf parsers accept fields in any order, so a decision is its template's fields
# (code, reason, rule, algorithm, limit, period, shadow_mode: numbers 1-6 and 10) followed
# by the limiter's state (7, 8, 9, 11, 12). Verdicts with a circuit breaker or an adaptive
# limit (which overrides `limit`) are rare on a Check: they are built as messages and their
# serialization is copied in.

#: Templates kept (one per rule and outcome seen); past it they are built afresh.
_MAX_TEMPLATES = 16_384

# Varints of up to 14 bits, by value: minimal (the last group) and with the continuation bit
# on both bytes (a group followed by more). Three lookups write any value below 2**42; the two
# tables take about 1 MiB.
_LAST = [
    bytes([value]) if value < 0x80 else bytes([value & 0x7F | 0x80, value >> 7])
    for value in range(1 << 14)
]
_MORE = [bytes([value & 0x7F | 0x80, value >> 7 | 0x80]) for value in range(1 << 14)]
_LOW = (1 << 14) - 1
_NANOS_PER_S = 1_000_000_000

# Field keys (number << 3 | wire type): 0 varint, 2 length-delimited.
_OVERALL_CODE = b"\x08"  # CheckResponse.overall_code
_DECISION = b"\x12"  # CheckResponse.decisions
_REMAINING = b"\x38"  # Decision.remaining
_RETRY_AFTER = b"\x42"  # Decision.retry_after
_RESET_AFTER = b"\x4a"  # Decision.reset_after
_DELAY = b"\x5a"  # Decision.delay
_LEASE = b"\x62"  # Decision.lease
_SECONDS = b"\x08"  # Duration.seconds
_NANOS = b"\x10"  # Duration.nanos
_CODES = {False: _OVERALL_CODE + _LAST[pb.CODE_OK], True: _OVERALL_CODE + _LAST[pb.CODE_OVER_LIMIT]}


def varint(value: int) -> bytes:
    """Return the protobuf varint of `value`, 0 <= value < 2**64."""
    if value <= _LOW:
        return _LAST[value]
    if value >> 14 <= _LOW:
        return _MORE[value & _LOW] + _LAST[value >> 14]
    if value >> 28 <= _LOW:
        return _MORE[value & _LOW] + _MORE[value >> 14 & _LOW] + _LAST[value >> 28]
    parts = []
    while value > 0x7F:
        parts.append(value & 0x7F | 0x80)
        value >>= 7
    parts.append(value)
    return bytes(parts)


def duration(seconds: float) -> bytes:
    """Return a Duration field's length and body as `set_duration` writes `seconds`."""
    if not 0 < seconds < math.inf:  # never (or NaN): present and empty, like SetInParent
        return b"\x00"
    whole, nanos = divmod(round(seconds * 1e9), _NANOS_PER_S)
    # nanos < 2**30: at most three groups, written here rather than through `varint`
    if nanos <= _LOW:
        body = _NANOS + _LAST[nanos] if nanos else b""
    elif nanos >> 14 <= _LOW:
        body = _NANOS + _MORE[nanos & _LOW] + _LAST[nanos >> 14]
    else:
        body = _NANOS + _MORE[nanos & _LOW] + _MORE[nanos >> 14 & _LOW] + _LAST[nanos >> 28]
    if whole:
        body = _SECONDS + varint(whole) + body
    return _LAST[len(body)] + body


class DecisionWriter:
    """Writes Check responses as wire bytes; the same bytes a `CheckResponse` parses from.

    Concurrency: one event loop (templates are cached without a lock).
    """

    def __init__(self) -> None:
        # Keyed by the rule's id (hashing the rule costs more than the bytes); the entry holds
        # the rule, so no other rule can get its id while the entry lives.
        self._templates: dict[
            tuple[bool, str, str, bool, int], tuple[RateLimitRule | None, bytes]
        ] = {}

    def check_response(self, verdicts: Sequence[Verdict]) -> bytes:
        """Return the serialized `CheckResponse` of `verdicts`, decisions in the same order."""
        templates = self._templates
        if len(templates) > _MAX_TEMPLATES:
            templates.clear()
        parts = [b""]  # the overall code, once known
        append = parts.append
        over = False
        for verdict in verdicts:
            over_limit, reason, rule, label, state, shadow, _, breaker, adaptive = verdict
            over = over or over_limit
            if breaker is not None or adaptive is not None:
                body = decision_message(verdict).SerializeToString()
            else:
                key = (over_limit, reason, label, shadow, id(rule))
                entry = templates.get(key)
                if entry is None:
                    entry = templates[key] = (rule, template_message(verdict).SerializeToString())
                body = entry[1]
                if state is not None:
                    allowed, _, remaining, retry_after_s, reset_after_s, delay_s, lease = state
                    fields = _RESET_AFTER + duration(reset_after_s)
                    if remaining:
                        fields = _REMAINING + varint(remaining) + fields
                    if not allowed:
                        fields += _RETRY_AFTER + duration(retry_after_s)
                    if delay_s > 0:
                        fields += _DELAY + duration(delay_s)
                    if lease:
                        encoded = lease.encode()
                        fields += _LEASE + varint(len(encoded)) + encoded
                    body += fields
            append(_DECISION + varint(len(body)) + body)
        parts[0] = _CODES[over]
        return b"".join(parts)
