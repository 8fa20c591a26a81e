"""Errors of the HL7 v2 slice. Each carries the data that caused it and a hint for the integrator.

Network loss is reported with the platform-wide :class:`tryggheim.errors.ConnectionLost`, so
callers that retry "any lost peer" need not know about MLLP.
"""

from __future__ import annotations

from tryggheim.errors import TryggheimError


class HL7Error(TryggheimError):
    """Base of every error raised on purpose by the :mod:`hl7` package."""


class MalformedMessageError(HL7Error):
    """HL7 v2 text does not follow the encoding rules (segments, delimiters, escapes).

    ``where`` names the place (e.g. ``MSH-2``, ``segment 3``, ``escape sequence``)."""

    def __init__(self, where: str, problem: str, *, excerpt: str = "") -> None:
        self.where = where
        self.problem = problem
        self.excerpt = excerpt
        shown = f" near {excerpt[:60]!r}" if excerpt else ""
        super().__init__(
            f"malformed HL7 v2 message: {where}: {problem}{shown}",
            hint="the sender does not follow HL7 v2 chapter 2 encoding rules; ask its vendor",
        )


class AckParseError(HL7Error):
    """A reply that should be an ACK is not one (no MSH, no MSA, unknown MSA-1 code...)."""

    def __init__(self, problem: str, *, text: str = "") -> None:
        self.problem = problem
        self.text = text
        super().__init__(
            f"not an HL7 ACK: {problem}",
            hint="the peer must answer every message with an ACK carrying MSA-1 and MSA-2",
        )


class OruBuildError(HL7Error):
    """The inputs of an ORU^R01 cannot be expressed as a valid IHE PCD-01 message."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(
            f"cannot build ORU^R01: {field}: {problem}",
            hint="fix the named input; the message was not sent",
        )


class FrameTooLargeError(HL7Error):
    """An MLLP frame grew past the configured limit and was discarded.

    ``completed`` holds the frames that were complete before or after it in the same chunk, so
    no good message is lost; ``head`` holds the start of the discarded frame so that a receiver
    can still recover MSH-10 and reject the message by name."""

    def __init__(self, limit: int, *, head: bytes, completed: tuple[bytes, ...]) -> None:
        self.limit = limit
        self.head = head
        self.completed = completed
        super().__init__(
            f"MLLP frame larger than {limit} bytes discarded",
            hint="raise max_frame_bytes if the peer legitimately sends messages this large",
        )


class FrameDecodeError(HL7Error):
    """An MLLP frame's bytes are not valid UTF-8 (the platform's HL7 character set)."""

    def __init__(self, position: int, reason: str, *, frame: bytes) -> None:
        self.position = position
        self.reason = reason
        self.frame = frame
        super().__init__(
            f"MLLP frame is not UTF-8 at byte {position}: {reason}",
            hint="the peer must send UTF-8 (MSH-18 'UNICODE UTF-8'); check its character set",
        )


class MLLPTimeoutError(HL7Error):
    """No ACK naming the sent message arrived in time. The message may or may not have been
    processed: resend it with the same MSH-10 so the receiver can deduplicate."""

    def __init__(self, peer: str, control_id: str, timeout: float) -> None:
        self.peer = peer
        self.control_id = control_id
        self.timeout = timeout
        super().__init__(
            f"{peer}: no ACK for message {control_id!r} within {timeout:g} s",
            hint="the message is retried with the same control id; check the peer if it persists",
        )
