"""What the parts of the HL7 receiver (:mod:`gateway.hl7.inbound.service`) share: its counters, the
backlog the writer (:mod:`gateway.hl7.inbound.writer`) hands the processor
(:mod:`gateway.hl7.inbound.processor`) with the senders waiting in it, and how values are
written into ``hl7_inbound`` rows and ACKs."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from hl7.message import Message


@dataclass(slots=True)
class InboundStats:
    received: int = 0
    stored: int = 0
    """New rows (a resend is not stored again)."""
    store_batches: int = 0
    """Group-commit transactions: ``stored / store_batches`` messages per transaction."""
    store_errors: int = 0
    """Messages answered CE/AE because the store failed (the sender sends them again)."""
    accepted: int = 0
    """Processed: AA (in accept mode after the CA)."""
    errors: int = 0
    """Processed: AE (e.g. unknown patient)."""
    rejected: int = 0
    """AR/CR: refused on the header (message type, version, MSH-10) or in processing."""
    duplicates: int = 0
    """Resends answered with the stored ACK."""
    process_batches: int = 0
    process_failures: int = 0
    """Processing transactions that failed (the store is down): retried with backoff."""
    altered: dict[str, int] = field(default_factory=dict)
    """Values of accepted messages taken in altered or left out, by reason (e.g.
    ``sex_spelling``, ``observation_left_out``): exported with a ``reason`` label."""


@dataclass(frozen=True, slots=True)
class Stored:
    """What storing one message came to: the ACK to answer (``None`` only when the earlier copy
    of a resend could not be read back to answer it), and whether it was a resend."""

    ack: bytes | None
    duplicate: bool


@dataclass(slots=True)
class Waiter:
    future: asyncio.Future[Stored]
    duplicate: bool


@dataclass(slots=True)
class Backlog:
    """When rows began to wait for processing, when the last message came and when the
    processor last gave the store back to the writer (loop time)."""

    since: float | None = None
    last_arrival: float = 0.0
    released: float = 0.0
    waiting: dict[int, list[Waiter]] = field(default_factory=dict)
    """Original-mode senders by row id: answered when their row is processed."""
    work: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when rows were stored for processing (or a sender waits for its answer)."""
    parsed: dict[int, Message] = field(default_factory=dict)
    """The endpoint's parse of rows stored for processing, by row id, so that the processor
    does not parse the same bytes again (at most :data:`MAX_HANDED_OVER`; the others, and
    rows left from before a restart, are parsed from the store)."""


#: Parsed messages handed from the endpoint to the processor at most (the processor may defer
#: for seconds under a stream; beyond this the stored bytes are parsed again, as after a restart).
MAX_HANDED_OVER = 2_000


def settle(future: asyncio.Future[Stored], outcome: Stored | BaseException) -> None:
    # A sender whose connection closed in the meantime no longer waits.
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def msa_code(ack: bytes) -> str | None:
    for segment in ack.split(b"\r"):
        if segment.startswith(b"MSA|"):
            return segment.split(b"|")[1][:2].decode("ascii", errors="replace")
    return None


def storable_text(value: str) -> str:
    """``value`` as PostgreSQL text can hold it (no NUL), the same on every backend."""
    return value.replace("\x00", "\N{REPLACEMENT CHARACTER}")


def new_control_id() -> str:
    return uuid.uuid4().hex[:20]
