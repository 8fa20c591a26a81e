"""MLLP (HL7 v2 Minimal Lower Layer Protocol) over TCP or TLS: framing, client, server.

A frame is ``0x0B <message bytes> 0x1C 0x0D``. :class:`MLLPDecoder` is pure and incremental;
:class:`MLLPClient` and :class:`MLLPServer` are the thin asyncio I/O around it. The platform
writes UTF-8 (MSH-18 ``UNICODE UTF-8``); received messages are decoded as their MSH-18 says
(:func:`hl7.message.decode_message`).

Decoder leniency, chosen for peers seen in the field: bytes outside frames (stray CR/LF between
frames, noise before a start block) are skipped and counted; a 0x1C not followed by 0x0D still
ends the frame; a new 0x0B inside an unfinished frame means the peer restarted, so the partial
frame is discarded.

Server rules (a receiver must never lose a message nor die on one):

* many messages per connection, answered in order, each ACK written only after the handler
  returned it: the handler stores the raw message first (:data:`Handler`);
* a frame without a readable MSH cannot be answered: it is logged and counted, and the
  connection is closed, since the peer is not speaking HL7 (or lost the framing);
* a frame with a readable MSH that does not parse is answered AR/CR with an ERR saying why;
* a frame over ``max_frame_bytes`` is answered AR/CR when its MSH can be read, then the rest of
  it is read and dropped and the connection closed;
* ``read_timeout`` is a deadline for the whole frame: a frame not complete that long after its
  first bytes came (a stalled or trickling peer), and an ACK the peer does not read, close the
  connection; ``idle_timeout``: so does a connection with nothing to say;
* ``max_buffered_bytes`` bounds the unfinished frames of all connections together: the
  connection whose frame would go over it is answered AE/CE ("busy, send it again") and closed,
  so that many peers sending large frames slowly cannot exhaust the host's memory;
* a frame larger than :data:`INLINE_PARSE_BYTES` is parsed in a worker thread: parsing is linear
  in the frame's size, but a 4 MB frame still takes a second or more, during which the event
  loop must go on serving other connections (and whatever else shares it);
* every other failure (peer reset, TLS error, a bug) costs at most that connection, and is
  logged and counted in :class:`MLLPServerStats`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Self, TypeVar

from hl7.ack import Ack, AckCode, build_ack, build_nak, encode_ack, parse_ack
from hl7.errors import (
    ErrorCode,
    FrameTooLargeError,
    HL7Error,
    MalformedMessageError,
    MLLPTimeoutError,
)
from hl7.message import Message, decode_message, parse_header, read_header
from tryggheim.errors import ConnectionLost

log = logging.getLogger(__name__)

_T = TypeVar("_T")

START_BLOCK = 0x0B
END_BLOCK = 0x1C
CARRIAGE_RETURN = 0x0D
#: Far above any ORU/ADT the platform exchanges (1 MB messages are legal and pass), low enough
#: that a runaway peer cannot exhaust the memory of a small host.
DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024
#: A sender gets this long to send the whole of a started frame, or to read its ACK.
DEFAULT_READ_TIMEOUT = 30.0
#: All connections' unfinished frames together: 16 frames of the largest size.
DEFAULT_MAX_BUFFERED_BYTES = 16 * DEFAULT_MAX_FRAME_BYTES
#: Frames up to this size parse in well under 20 ms and are parsed on the event loop; larger
#: ones in a worker thread (a thread hop costs more than parsing a typical ORU or ADT).
INLINE_PARSE_BYTES = 32 * 1024
#: HL7 interfaces keep connections open between messages; one silent this long is closed.
DEFAULT_IDLE_TIMEOUT = 600.0
#: How much of a discarded oversize frame is kept: enough for the MSH segment.
_HEAD_BYTES = 2048
_READ_SIZE = 65536


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One received message, as the server hands it to its :data:`Handler`."""

    raw: bytes
    """The frame's content exactly as received: what the application stores."""
    message: Message
    peer: str
    """``host:port`` of the sender's connection."""


Handler = Callable[[ReceivedMessage], Awaitable[bytes]]
"""Server handler: stores ``received.raw`` durably (deduplicating on
:func:`hl7.inbound.dedupe_key`, so that a resend gets the stored ACK instead of a second
processing) and returns the ACK's bytes, which the server writes only then. An exception is
answered AE/CE by the server."""


async def parse_off_loop(data: bytes, parse: Callable[[bytes], _T]) -> _T:
    """``parse(data)``, in a worker thread when ``data`` is larger than
    :data:`INLINE_PARSE_BYTES`, so that a large message never stalls the event loop."""
    if len(data) <= INLINE_PARSE_BYTES:
        return parse(data)
    return await asyncio.to_thread(parse, data)


def encode_frame(message: str | bytes) -> bytes:
    """One MLLP frame holding ``message`` (text is written as UTF-8)."""
    data = message.encode("utf-8") if isinstance(message, str) else message
    return bytes((START_BLOCK,)) + data + bytes((END_BLOCK, CARRIAGE_RETURN))


class MLLPDecoder:
    """Incremental MLLP deframer: bytes in (any chunking), complete frame contents out."""

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        if max_frame_bytes < 1:
            raise ValueError("max_frame_bytes must be positive")
        self.max_frame_bytes = max_frame_bytes
        self.skipped_bytes = 0
        """Bytes seen outside any frame."""
        self.discarded_frames = 0
        """Frames dropped unfinished: too large, or cut off by a new start block."""
        self._buffer = bytearray()
        self._in_frame = False
        self._after_end = False
        self._discarding = False

    @property
    def pending_bytes(self) -> int:
        """Bytes of an unfinished frame held in memory."""
        return len(self._buffer)

    @property
    def head(self) -> bytes:
        """The start of the unfinished frame: enough for its MSH segment."""
        return bytes(self._buffer[:_HEAD_BYTES])

    def discard(self) -> None:
        """Drop the unfinished frame; the rest of it will be read and dropped too."""
        if self._in_frame:
            self.discarded_frames += 1
            self._buffer.clear()
            self._in_frame = False
            self._discarding = True

    @property
    def in_frame(self) -> bool:
        """Whether a frame has started and not ended (an oversize one being discarded too)."""
        return self._in_frame or self._discarding

    def feed(self, data: bytes) -> list[bytes]:
        """Consume ``data``; return the contents of every frame it completes.

        An oversize frame raises :class:`FrameTooLargeError` *after* the whole chunk has been
        consumed; the error's ``completed`` holds the good frames of this chunk."""
        frames: list[bytes] = []
        oversize_head: bytes | None = None
        i, n = 0, len(data)
        while i < n:
            if self._after_end:
                self._after_end = False
                if data[i] == CARRIAGE_RETURN:
                    i += 1
                    continue
            if self._discarding:
                # Rest of an oversize frame: dropped up to its end block (or a new start block).
                end = data.find(END_BLOCK, i)
                restart = data.find(START_BLOCK, i)
                if end < 0 and restart < 0:
                    break
                self._discarding = False
                if end >= 0 and (restart < 0 or end < restart):
                    self._after_end = True
                    i = end + 1
                else:
                    i = restart
                continue
            if not self._in_frame:
                start = data.find(START_BLOCK, i)
                stop = n if start < 0 else start
                self.skipped_bytes += stop - i
                if start < 0:
                    break
                self._in_frame = True
                i = start + 1
                continue
            end = data.find(END_BLOCK, i)
            restart = data.find(START_BLOCK, i)
            stop = min((p for p in (end, restart) if p >= 0), default=n)
            if len(self._buffer) + stop - i > self.max_frame_bytes:
                oversize_head = bytes(self._buffer[:_HEAD_BYTES] + data[i : i + _HEAD_BYTES])
                oversize_head = oversize_head[:_HEAD_BYTES]
                self.discarded_frames += 1
                self._buffer.clear()
                self._in_frame = False
                self._discarding = True
                i = stop
                continue
            self._buffer += data[i:stop]
            if stop == n:
                break
            if data[stop] == END_BLOCK:
                frames.append(bytes(self._buffer))
                self._in_frame = False
                self._after_end = True
            else:
                self.discarded_frames += 1
            self._buffer.clear()
            i = stop + 1
        if oversize_head is not None:
            raise FrameTooLargeError(
                self.max_frame_bytes, head=oversize_head, completed=tuple(frames)
            )
        return frames


class MLLPClient:
    """Sends messages one at a time and waits for the ACK whose MSA-2 names each one.

    The connection is opened on entry and, after any failure, again on the next :meth:`send`.
    A negative ACK (AE/AR/CE/CR) is returned, not raised: whether to resend is the caller's
    business. Concurrent sends on one client are serialised (MLLP has no multiplexing)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        self.host = host
        self.port = port
        self._ssl = ssl
        self._server_hostname = server_hostname
        self._max_frame_bytes = max_frame_bytes
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._decoder = MLLPDecoder(max_frame_bytes)
        self._frames: deque[bytes] = deque()
        self._lock = asyncio.Lock()

    @property
    def peer(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._writer is not None

    async def __aenter__(self) -> Self:
        await self._connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        # A fresh decoder: bytes of a half-read frame must not leak into the next connection.
        self._decoder = MLLPDecoder(self._max_frame_bytes)
        self._frames.clear()
        if writer is None:
            return
        writer.close()
        try:
            await writer.wait_closed()
        except OSError as exc:
            # The peer may already have reset the connection; it is closed either way.
            log.debug("MLLP %s: error while closing: %s", self.peer, exc)

    # The deadline is per message on purpose (the outbound queue sets it), hence a parameter.
    async def send(self, message: str, timeout: float) -> Ack:
        """Send ``message`` and return its ACK.

        ``timeout`` covers (re)connecting, writing and waiting. Raises
        :class:`~hl7.errors.MLLPTimeoutError`, :class:`~tryggheim.errors.ConnectionLost`, or
        :class:`~hl7.errors.HL7Error` when the peer answers with something that is no ACK."""
        control_id = parse_header(message).control_id
        if not control_id:
            raise MalformedMessageError("MSH-10", "empty: the ACK could not be matched")
        async with self._lock:
            try:
                async with asyncio.timeout(timeout):
                    return await self._exchange(message, control_id)
            except TimeoutError:
                # Drop the connection: a late ACK must not be mistaken for a later message's.
                await self.close()
                raise MLLPTimeoutError(self.peer, control_id, timeout) from None
            except OSError as exc:
                await self.close()
                raise ConnectionLost(self.peer, str(exc) or type(exc).__name__) from exc
            except (ConnectionLost, HL7Error):
                await self.close()
                raise

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            try:
                self._reader, self._writer = await asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self._server_hostname if self._ssl else None,
                )
            except OSError as exc:
                raise ConnectionLost(self.peer, f"cannot connect: {exc}") from exc
        return self._reader, self._writer

    async def _exchange(self, message: str, control_id: str) -> Ack:
        reader, writer = await self._connect()
        writer.write(encode_frame(message))
        await writer.drain()
        while True:
            while self._frames:
                ack = parse_ack(self._frames.popleft())
                if ack.acked_control_id == control_id:
                    return ack
                log.warning(
                    "MLLP %s: ignoring ACK for %r while waiting for %r",
                    self.peer,
                    ack.acked_control_id,
                    control_id,
                )
            data = await reader.read(_READ_SIZE)
            if not data:
                raise ConnectionLost(self.peer, "peer closed the connection before the ACK")
            self._frames.extend(self._decoder.feed(data))


@dataclass
class MLLPServerStats:
    """Counters an operator can read (and a test can assert)."""

    connections: int = 0
    frames: int = 0
    rejected: int = 0
    """Frames the server itself answered AR/CR: not parseable HL7, or too large."""
    unanswerable: int = 0
    """Frames without a readable MSH: logged, connection closed, no ACK possible."""
    handler_errors: int = 0
    oversize: int = 0
    skipped_bytes: int = 0
    read_timeouts: int = 0
    """Connections closed because a started frame was not complete in time or an ACK was not
    read."""
    busy: int = 0
    """Frames refused (AE/CE, connection closed) because the unfinished frames of all
    connections held ``max_buffered_bytes``."""
    idle_timeouts: int = 0
    connection_errors: int = 0
    """Connections lost to the network or TLS (reset, broken pipe, bad handshake data...)."""
    internal_errors: int = 0
    """Connections ended by a bug in the server: logged with a traceback."""


class MLLPServer:
    """Listens for MLLP connections and answers each frame with the handler's ACK (see the
    module docstring for the rules). Connection tasks live in a TaskGroup owned by the server
    and end on exit."""

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl: ssl_module.SSLContext | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
        read_timeout: float | None = DEFAULT_READ_TIMEOUT,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        stats: MLLPServerStats | None = None,
    ) -> None:
        """``stats``: the counters to count in (an application exporting them owns them)."""
        if max_buffered_bytes < max_frame_bytes:
            raise ValueError("max_buffered_bytes must hold at least one frame of max_frame_bytes")
        for name, timeout in (("read_timeout", read_timeout), ("idle_timeout", idle_timeout)):
            if timeout is not None and timeout <= 0:
                raise ValueError(f"{name} must be positive (or None for no limit)")
        self._handler = handler
        self.host = host
        self._requested_port = port
        self._ssl = ssl
        self._max_frame_bytes = max_frame_bytes
        self._max_buffered_bytes = max_buffered_bytes
        self._read_timeout = read_timeout
        self._idle_timeout = idle_timeout
        self.stats = stats if stats is not None else MLLPServerStats()
        self.buffered_bytes = 0
        """Bytes of unfinished frames held for all connections now."""
        self._server: asyncio.Server | None = None
        self._group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stack = AsyncExitStack()

    @property
    def port(self) -> int:
        """The port listened on (the free port chosen when 0 was asked for)."""
        if self._server is None:
            raise RuntimeError("the server is not started; use it as an async context manager")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> Self:
        self._group = await self._stack.enter_async_context(asyncio.TaskGroup())
        try:
            self._server = await asyncio.start_server(
                self._accept,
                self.host,
                self._requested_port,
                ssl=self._ssl,
                # A TLS handshake that stalls is a stalled read like any other.
                ssl_handshake_timeout=self._read_timeout if self._ssl else None,
            )
        except BaseException:
            await self._stack.aclose()
            raise
        # Exit order is LIFO: stop accepting and end connections before the group is awaited.
        self._stack.push_async_callback(self._shutdown)
        log.info("MLLP server listening on %s:%d", self.host, self.port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    async def _shutdown(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if server is not None:
            await server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None or self._group is None:
            writer.close()  # accepted while shutting down
            return
        task = self._group.create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else str(peername)
        self.stats.connections += 1
        try:
            await self._converse(reader, writer, peer)
        except TimeoutError:
            self.stats.read_timeouts += 1
            log.warning("MLLP %s: the peer does not read its ACKs; closing", peer)
        except OSError as exc:  # ssl.SSLError is one too
            self.stats.connection_errors += 1
            log.info("MLLP %s: connection lost: %s", peer, exc)
        except Exception:
            # A bug must cost this connection only: an exception leaving this task would end
            # the TaskGroup, and with it the server and every other connection.
            self.stats.internal_errors += 1
            log.exception("MLLP %s: internal error; closing the connection", peer)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError as exc:
                log.debug("MLLP %s: error while closing: %s", peer, exc)

    async def _converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        decoder = MLLPDecoder(self._max_frame_bytes)
        held = 0  # this connection's share of buffered_bytes
        deadline: float | None = None  # when the frame being received must be complete
        try:
            while data := await self._read(reader, deadline, peer):
                skipped = decoder.skipped_bytes
                oversize: FrameTooLargeError | None = None
                try:
                    frames = decoder.feed(data)
                except FrameTooLargeError as exc:
                    frames, oversize = list(exc.completed), exc
                if frames or not decoder.in_frame:
                    deadline = None  # a frame ended: the unfinished one (if any) is a new one
                if decoder.in_frame and deadline is None and self._read_timeout is not None:
                    deadline = asyncio.get_running_loop().time() + self._read_timeout
                self.buffered_bytes += decoder.pending_bytes - held
                held = decoder.pending_bytes
                self.stats.skipped_bytes += decoder.skipped_bytes - skipped
                for frame in frames:
                    reply = await self._answer(frame, peer)
                    if reply is None:
                        return
                    await self._write(writer, reply)
                if oversize is not None:
                    self.stats.oversize += 1
                    text = f"message larger than {self._max_frame_bytes} bytes"
                    await self._refuse(
                        oversize.head, AckCode.AR, text, reader, writer, decoder, peer, deadline
                    )
                    return
                if held and self.buffered_bytes > self._max_buffered_bytes:
                    self.stats.busy += 1
                    head = decoder.head
                    decoder.discard()
                    self.buffered_bytes -= held
                    held = 0
                    text = "the receiver is busy with other large messages; send it again"
                    await self._refuse(
                        head, AckCode.AE, text, reader, writer, decoder, peer, deadline
                    )
                    return
        finally:
            self.buffered_bytes -= held

    async def _read(self, reader: asyncio.StreamReader, deadline: float | None, peer: str) -> bytes:
        """The next bytes; ``b""`` when the peer closed, stayed silent too long or did not
        finish its frame by ``deadline`` (loop time; ``None`` between frames)."""
        if deadline is None:
            timeout = self._idle_timeout
        else:
            timeout = max(deadline - asyncio.get_running_loop().time(), 0.0)
        try:
            async with asyncio.timeout(timeout):
                return await reader.read(_READ_SIZE)
        except TimeoutError:
            if deadline is not None:
                self.stats.read_timeouts += 1
                log.warning(
                    "MLLP %s: frame not complete within %g s; closing", peer, self._read_timeout
                )
            else:
                self.stats.idle_timeouts += 1
                log.info("MLLP %s: idle for %g s; closing", peer, self._idle_timeout)
            return b""

    async def _write(self, writer: asyncio.StreamWriter, reply: bytes) -> None:
        writer.write(encode_frame(reply))
        async with asyncio.timeout(self._read_timeout):
            await writer.drain()

    async def _answer(self, frame: bytes, peer: str) -> bytes | None:
        """The reply to one frame; ``None`` when it has no readable MSH to answer."""
        self.stats.frames += 1
        try:
            message = await parse_off_loop(frame, decode_message)
        except MalformedMessageError as exc:
            if exc.header is None:
                self.stats.unanswerable += 1
                log.error("MLLP %s: no readable MSH, closing the connection: %s", peer, exc)
                return None
            self.stats.rejected += 1
            log.warning("MLLP %s: rejected %r: %s", peer, exc.header.control_id, exc)
            return encode_ack(build_nak(exc.header, exc, _now(), _new_control_id()), exc.header)
        try:
            return await self._handler(ReceivedMessage(frame, message, peer))
        except Exception:
            # The handler is application code: a bug in it must neither end the connection nor
            # leave the sender without an answer. AE tells the sender to try again later.
            log.exception("MLLP %s: handler failed on message %r", peer, message.control_id)
            self.stats.handler_errors += 1
            ack = build_ack(
                message,
                AckCode.AE,
                "receiver failed to process the message",
                _now(),
                _new_control_id(),
                error=ErrorCode.APPLICATION_INTERNAL_ERROR,
            )
            return encode_ack(ack, message)

    async def _refuse(
        self,
        head: bytes,
        code: AckCode,
        text: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        decoder: MLLPDecoder,
        peer: str,
        deadline: float | None,
    ) -> None:
        """Answer a frame that is dropped unread (``head`` is its start) and end the
        connection once the rest of the frame is read, or at the frame's ``deadline``."""
        header = read_header(head)
        log.warning(
            "MLLP %s: %s (MSH-10 %r); closing", peer, text, header.control_id if header else None
        )
        if header is None:
            self.stats.unanswerable += 1
            return
        self.stats.rejected += 1
        nak = build_ack(
            header,
            code,
            text,
            _now(),
            _new_control_id(),
            error=ErrorCode.APPLICATION_INTERNAL_ERROR,
        )
        await self._write(writer, encode_ack(nak, header))
        # Read the rest of the frame before closing: closing with unread bytes makes the
        # kernel reset the connection, which can destroy the NAK before the peer reads it. The
        # frame's deadline still holds.
        try:
            async with asyncio.timeout_at(deadline):
                while decoder.in_frame and (data := await reader.read(_READ_SIZE)):
                    try:
                        decoder.feed(data)
                    except FrameTooLargeError:
                        continue  # a further oversize frame; the connection ends either way
        except TimeoutError:
            log.info("MLLP %s: the rest of the refused frame did not come in time", peer)


def _now() -> datetime:
    return datetime.now().astimezone()


def _new_control_id() -> str:
    # 20 characters: the MSH-10 limit of v2.3-v2.5 peers.
    return uuid.uuid4().hex[:20]
