"""A GP-side (fastlege) MLLP receiver for the demo and the tests: it accepts IHE PCD-01
ORU^R01 messages the way a GP system would.

Each accepted message is appended to an optional log file *before* it is acknowledged (the raw
bytes as received, segment ``\\r`` kept, one ``\\n`` after each message so a pager shows one
message per block) and kept, decoded, in :attr:`GPEndpoint.received`. A resend (same sender and
MSH-10: :func:`hl7.inbound.dedupe_key`) is answered with the ACK the original got and stored
once. Anything that is not ORU^R01, or has no MSH-10, is answered AR with the reason in
MSA-3/ERR.
"""

from __future__ import annotations

import logging
import ssl as ssl_module
import uuid
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from hl7.ack import AckCode, build_ack, encode_ack
from hl7.errors import ErrorCode
from hl7.inbound import DedupeKey, dedupe_key
from hl7.mllp import DEFAULT_MAX_FRAME_BYTES, MLLPServer, ReceivedMessage

log = logging.getLogger(__name__)


class GPEndpoint:
    """``async with GPEndpoint() as gp:`` then send to ``127.0.0.1:gp.port``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl: ssl_module.SSLContext | None = None,
        log_path: Path | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        self.received: list[str] = []
        """Raw text of each accepted message, in arrival order, duplicates excluded."""
        self.duplicates = 0
        self.rejected = 0
        self._log_path = log_path
        self._acks: dict[DedupeKey, bytes] = {}
        self.server = MLLPServer(self._handle, host, port, ssl=ssl, max_frame_bytes=max_frame_bytes)

    @property
    def port(self) -> int:
        return self.server.port

    async def __aenter__(self) -> Self:
        await self.server.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.server.__aexit__(exc_type, exc, tb)

    async def _handle(self, received: ReceivedMessage) -> bytes:
        message = received.message
        now = datetime.now().astimezone()
        control_id = uuid.uuid4().hex[:20]
        key = dedupe_key(message)
        if key is None:
            self.rejected += 1
            missing = build_ack(
                message,
                AckCode.AR,
                "MSH-10 (message control id) is missing",
                now,
                control_id,
                error=ErrorCode.REQUIRED_FIELD_MISSING,
                error_location="MSH^1^10",
            )
            return encode_ack(missing, message)
        original_ack = self._acks.get(key)
        if original_ack is not None:
            self.duplicates += 1
            log.info("GP %s: duplicate %r answered with its first ACK", received.peer, key)
            return original_ack
        kind = f"{message.message_code}^{message.trigger_event}"
        if kind != "ORU^R01":
            self.rejected += 1
            refused = build_ack(
                message,
                AckCode.AR,
                f"{kind} not accepted here; this endpoint receives ORU^R01 only",
                now,
                control_id,
                error=ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
                error_location="MSH^1^9",
            )
            return encode_ack(refused, message)
        if self._log_path is not None:
            self._append_to_log(self._log_path, received.raw)
        self.received.append(received.raw.decode(message.charset))
        ack = encode_ack(build_ack(message, AckCode.AA, "", now, control_id), message)
        self._acks[key] = ack
        return ack

    @staticmethod
    def _append_to_log(path: Path, raw: bytes) -> None:
        # A small synchronous append: a demo/test peer on a local disk, and it must be on disk
        # before the ACK goes out. Binary, so that nothing translates the segment terminators.
        if not raw.endswith(b"\r"):
            raw += b"\r"
        with path.open("ab") as f:
            f.write(raw + b"\n")
