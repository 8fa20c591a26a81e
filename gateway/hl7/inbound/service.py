"""HL7 v2 in: the care platform's MLLP endpoint for hospitals, GPs and third-party gateways.

Every message is stored raw (table ``hl7_inbound``) before it is answered. What the answer
says depends on what the sender asked for in MSH-15 (:func:`hl7.ack.wants_accept_ack`):

- **accept mode** (MSH-15 valued and not ``NE``, e.g. IHE PCD-01's ``AL``): only the header is
  checked (:func:`screen`: version, message type and event, MSH-10), the message is stored and
  answered ``CA``: the platform has taken responsibility for it. ``CR`` (with an ERR) refuses a
  header that is not acceptable, ``CE`` says the store failed (the sender keeps the message and
  sends it again). Processing comes afterwards; its outcome (state, detail, patient, and the
  application ACK AA/AE/AR that enhanced mode would send back as a message of its own, which
  this endpoint does not send) is recorded on the row.
- **original mode** (no MSH-15, or ``NE``; MSH-16 alone asks for the application ACK only):
  stored the same way, processed, and only then answered ``AA``/``AE``/``AR``.

Storing is a group commit (:mod:`gateway.hl7.inbound.writer`): each connection's handler hands
its row to one writer coroutine, which stores everything waiting on all connections in one
transaction, so SQLite's single writer, the transaction and its fsync are paid once per batch
rather than once per message. The writer keeps a connection of its own
(:mod:`gateway.hl7.inbound.rows`).

Processing is one processor coroutine in the same process (:mod:`gateway.hl7.inbound.processor`;
the writer hands it the stored rows, and the senders waiting for them, in a backlog:
:mod:`gateway.hl7.inbound.shared`). It takes stored rows in id order (arrival order, both modes
alike, so an A08 is applied after the A01 before it), in batches of one transaction with a
savepoint per message. Accept ACKs come first: while messages keep
arriving the processor waits for a pause (``quiet_s``), but never longer than ``defer_s``, and
not at all when an original-mode sender waits for its answer. Rows a crash left unprocessed
are taken when it starts.

A message whose sender (MSH-3/MSH-4) and MSH-10 were seen before is a resend: it gets the stored
ACK and is never processed again; a resend of an original-mode message still to be processed
waits for that processing. Processing is idempotent anyway: patients are keyed on the national
identity number, observations on the stored row's id. What a message does to the record store
(:mod:`gateway.hl7.inbound.apply`):

- ADT A01/A04 register (or update) a patient, A08/A31 update, A03 discharge, A40 merge;
- ORU^R01 (IHE PCD-01, e.g. from a Continua gateway) becomes observations of a known patient;
  an unknown patient is AE with an ERR saying so;
- a value taken in altered or left out (an unusual PID-8, an OBX not understood: the decoders'
  ``warnings``) makes the answer AA with an ERR of severity W each; it is logged, written in
  the row's detail and counted by reason (``InboundStats.altered``);
- anything else is AR/CR (:func:`screen`, and hl7.inbound.decode_inbound says which).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.hl7.inbound.apply import MessageApplier
from gateway.hl7.inbound.processor import InboundProcessor
from gateway.hl7.inbound.rows import STORE_ERRORS
from gateway.hl7.inbound.shared import (
    Backlog,
    InboundStats,
    msa_code,
    new_control_id,
    storable_text,
)
from gateway.hl7.inbound.writer import InboundWriter
from gateway.records.models import DEFAULT_TENANT, Hl7InboundState
from gateway.records.store import RecordStore
from gateway.settings import Hl7ListenSettings
from hl7.ack import AckCode, build_ack, build_nak, encode_ack, wants_accept_ack
from hl7.errors import ErrorCode, MessageError, UnsupportedMessageError
from hl7.inbound import decode_inbound
from hl7.message import Message
from hl7.mllp import MLLPServer, MLLPServerStats, ReceivedMessage

log = logging.getLogger(__name__)

#: HL7 v2 times without an offset are the sender's local time: Norway's, by default.
OSLO = ZoneInfo("Europe/Oslo")


def screen(message: Message, *, accept_mode: bool) -> None:
    """Raise the :class:`~hl7.errors.MessageError` (a reject: AR/CR) that the header alone
    earns: what is checked before a message is stored and answered.

    The version, message type and trigger event are what :func:`hl7.inbound.decode_inbound`
    checks first; it is asked about the header (MSH, and EVN, where v2.3 ADT names its event)
    without the body, so both say the same. Whatever it finds wrong in the missing body is the
    processing's business. In accept mode MSH-10 is required too: a CA promises the message is
    kept once, and only MSH-10 lets a resend be recognised."""
    evn = message.first("EVN")
    header = (message.msh,) if evn is None else (message.msh, evn)
    try:
        decode_inbound(Message(header, message.delimiters, message.charset))
    except MessageError as exc:
        if exc.reject:
            raise
    if accept_mode and not message.msh.field(10):
        raise UnsupportedMessageError(
            "MSH-10 (message control id) is empty: a message asking for an accept "
            "acknowledgement needs one, so that a resend can be recognised",
            code=ErrorCode.REQUIRED_FIELD_MISSING,
            location="MSH^1^10",
        )


class Hl7Receiver:
    """The :data:`hl7.mllp.Handler` of the platform's MLLP server; it answers while
    :meth:`running` (the writer and the processor) is entered."""

    def __init__(
        self,
        store: RecordStore,
        *,
        tenant_id: str = DEFAULT_TENANT,
        default_zone: ZoneInfo = OSLO,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        batch_size: int = 100,
        quiet_s: float = 0.05,
        defer_s: float = 30.0,
    ) -> None:
        """``batch_size``: rows processed per transaction; ``quiet_s``, ``defer_s``: the
        processor waits for a pause of ``quiet_s`` in arrivals, at most ``defer_s``."""
        self._tenant_id = tenant_id
        self._zone = default_zone
        self._clock = clock
        self.stats = InboundStats()
        self.connection_stats = MLLPServerStats()
        """The MLLP server's counters (frames refused, busy, deadlines missed...)."""
        backlog = Backlog()
        # The writer and the processor take turns: in SQLite only one can write anyway, and
        # a waiting sender is registered before the processor can look at its row.
        turn = asyncio.Lock()
        self._writer = InboundWriter(store, self.stats, backlog, turn)
        self._processor = InboundProcessor(
            store,
            MessageApplier(store, tenant_id=tenant_id, clock=clock),
            self.stats,
            backlog,
            turn,
            clock=clock,
            zone=default_zone,
            batch_size=batch_size,
            quiet_s=quiet_s,
            defer_s=defer_s,
        )
        self._running = False

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the writer and the processor (which first takes the rows left unprocessed)."""
        async with asyncio.TaskGroup() as tasks:
            loops = [
                tasks.create_task(self._writer.run(), name="hl7-inbound-store"),
                tasks.create_task(self._processor.run(), name="hl7-inbound-process"),
            ]
            self._running = True
            try:
                yield
            finally:
                self._running = False
                for loop in loops:
                    loop.cancel()

    async def __call__(self, received: ReceivedMessage) -> bytes:
        if not self._running:
            raise RuntimeError("the HL7 receiver is not running: enter Hl7Receiver.running()")
        self.stats.received += 1
        message = received.message
        accept_mode = wants_accept_ack(message)
        msh = message.msh
        received_at = self._clock()
        values: dict[str, Any] = {
            "tenant_id": self._tenant_id,
            "sender": storable_text(f"{msh.field(3)}|{msh.field(4)}")[:400],
            "control_id": storable_text(msh.field(10))[:200] or None,
            "message_type": storable_text(msh.field(9))[:40],
            "peer": received.peer[:100],
            "received_at": received_at,
            "raw": received.raw,
            "state": Hl7InboundState.RECEIVED.value,
            "ack": None,
            "ack_code": None,
            "detail": None,
            "application_ack": None,
            "processed_at": None,
        }
        refused: MessageError | None = None
        try:
            screen(message, accept_mode=accept_mode)
        except MessageError as exc:
            refused = exc
            nak = encode_ack(build_nak(message, exc, self._local_now(), new_control_id()), message)
            values |= {
                "state": Hl7InboundState.REJECTED.value,
                "ack": nak,
                "ack_code": msa_code(nak),
                "detail": storable_text(exc.user_message),
                # A CR is no application ACK: the message was not taken in to be processed.
                "application_ack": None if accept_mode else nak,
                "processed_at": received_at,
            }
        else:
            if accept_mode:
                ca = build_ack(message, AckCode.CA, "", self._local_now(), new_control_id())
                values |= {"ack": encode_ack(ca, message), "ack_code": AckCode.CA.value}
        try:
            stored = await self._writer.stored(values, message)
        except STORE_ERRORS as exc:
            self.stats.store_errors += 1
            log.error(
                "HL7 %r from %s could not be stored: %s", message.control_id, received.peer, exc
            )
            # CE in accept mode: not stored, not our responsibility; the sender sends it again.
            not_stored = build_ack(
                message,
                AckCode.AE,
                "the message could not be stored; send it again",
                self._local_now(),
                new_control_id(),
                error=ErrorCode.APPLICATION_INTERNAL_ERROR,
            )
            return encode_ack(not_stored, message)
        if stored.duplicate:
            self.stats.duplicates += 1
            log.info(
                "HL7 resend of %r from %s: answered with the stored ACK",
                message.control_id,
                received.peer,
            )
        elif refused is not None:
            self.stats.rejected += 1
            log.warning("HL7 %r from %s: %s", message.control_id, received.peer, refused)
        if stored.ack is None:
            earlier = build_ack(
                message,
                AckCode.AE,
                "an earlier copy of this message could not be read back to be processed",
                self._local_now(),
                new_control_id(),
                error=ErrorCode.APPLICATION_INTERNAL_ERROR,
            )
            return encode_ack(earlier, message)
        return stored.ack

    def _local_now(self) -> datetime:
        return self._clock().astimezone(self._zone)


def receiver_for(store: RecordStore, settings: Hl7ListenSettings) -> Hl7Receiver:
    return Hl7Receiver(
        store,
        tenant_id=settings.tenant_id,
        default_zone=ZoneInfo(settings.timezone),
        defer_s=settings.processing_delay_max_s,
    )


async def serve_hl7(
    store: RecordStore,
    settings: Hl7ListenSettings,
    *,
    receiver: Hl7Receiver | None = None,
    started: Callable[[MLLPServer], None] | None = None,
) -> None:
    """Run the MLLP endpoint until cancelled; ``started`` gets the listening server."""
    receiver = receiver or receiver_for(store, settings)
    # Exit order: the server (and its connections) stop before the writer and the processor.
    async with (
        receiver.running(),
        MLLPServer(
            receiver,
            settings.host,
            settings.port,
            ssl=settings.ssl_context(),
            max_frame_bytes=settings.max_message_bytes,
            max_buffered_bytes=settings.max_buffered_bytes,
            read_timeout=settings.read_timeout_s,
            idle_timeout=settings.idle_timeout_s,
            stats=receiver.connection_stats,
        ) as server,
    ):
        if started is not None:
            started(server)
        await asyncio.Event().wait()
