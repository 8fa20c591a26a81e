"""The HL7 work behind ``tryggheim hl7 send`` and ``tryggheim hl7 oru`` (argument parsing stays
in :mod:`tryggheim.apps.cli`; what ``hl7 oru`` makes of observations is the platform's mapping,
:func:`gateway.hl7.outbound.compose.oru_for_observations`).

``hl7 oru`` prints its message one segment per line (``\\n``) so that a terminal shows it;
``hl7 send`` accepts that form and sends ``\\r``.

``hl7 send`` sends one message over MLLP and returns the raw ACK frame, so that the command can
print it as received.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

from hl7.ack import Ack, parse_ack
from hl7.errors import MalformedMessageError, MLLPTimeoutError
from hl7.message import parse_header
from hl7.mllp import MLLPDecoder, encode_frame
from tryggheim.errors import ConnectionLost, TryggheimError


class ToolInputError(TryggheimError):
    def __init__(self, what: str, problem: str) -> None:
        self.what = what
        self.problem = problem
        super().__init__(f"{what}: {problem}", hint="see tryggheim hl7 --help")


def parse_patient_name(text: str) -> tuple[str, str]:
    """``FAMILY^GIVEN`` (the given name may be left out)."""
    family, _, given = text.partition("^")
    if not family.strip() or "^" in given:
        raise ToolInputError("--patient-name", f"{text!r} is not FAMILY^GIVEN")
    return family.strip(), given.strip()


def message_from_bytes(data: bytes) -> str:
    """A message read from a file: UTF-8, any of ``\\r``, ``\\n``, ``\\r\\n`` between segments,
    blank lines ignored; returned with ``\\r`` terminators."""
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise ToolInputError("message", f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    segments = [s for s in re.split(r"\r\n|\r|\n", text) if s.strip()]
    if not segments or not segments[0].startswith("MSH"):
        raise ToolInputError("message", "does not start with an MSH segment")
    return "\r".join(segments) + "\r"


async def send_message(host: str, port: int, message: str, timeout: float) -> tuple[bytes, Ack]:
    """Send ``message`` over MLLP; the raw ACK frame (the first one naming its MSH-10) and its
    parsed form. Raises :class:`~tryggheim.errors.ConnectionLost`,
    :class:`~hl7.errors.MLLPTimeoutError` or :class:`~hl7.errors.AckParseError`."""
    control_id = parse_header(message).control_id
    if not control_id:
        raise MalformedMessageError("MSH-10", "empty: the ACK could not be matched")
    peer = f"{host}:{port}"
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(encode_frame(message))
                await writer.drain()
                decoder = MLLPDecoder()
                while True:
                    data = await reader.read(65536)
                    if not data:
                        raise ConnectionLost(peer, "peer closed the connection before the ACK")
                    for frame in decoder.feed(data):
                        ack = parse_ack(frame)
                        if ack.acked_control_id == control_id:
                            return frame, ack
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except TimeoutError:
        raise MLLPTimeoutError(peer, control_id, timeout) from None
    except OSError as exc:
        raise ConnectionLost(peer, str(exc) or type(exc).__name__) from exc
