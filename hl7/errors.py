"""Errors of the HL7 v2 slice. Each carries the data that caused it and a hint for the integrator.

A received message that cannot be processed raises a :class:`MessageError`: it carries what the
negative ACK says about it (ERR-3 code from HL7 table 0357, ERR-2 location, reject or error), so
that :func:`hl7.ack.build_nak` can answer without knowing which check failed.

Network loss is reported with the platform-wide :class:`tryggheim.errors.ConnectionLost`, so
callers that retry "any lost peer" need not know about MLLP.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, ClassVar

from tryggheim.errors import TryggheimError

if TYPE_CHECKING:
    from hl7.message import Message


class ErrorCode(IntEnum):
    """HL7 table 0357 (message error condition codes), written in ERR-3."""

    SEGMENT_SEQUENCE_ERROR = 100
    REQUIRED_FIELD_MISSING = 101
    DATA_TYPE_ERROR = 102
    TABLE_VALUE_NOT_FOUND = 103
    UNSUPPORTED_MESSAGE_TYPE = 200
    UNSUPPORTED_EVENT_CODE = 201
    UNSUPPORTED_PROCESSING_ID = 202
    UNSUPPORTED_VERSION_ID = 203
    UNKNOWN_KEY_IDENTIFIER = 204
    DUPLICATE_KEY_IDENTIFIER = 205
    APPLICATION_RECORD_LOCKED = 206
    APPLICATION_INTERNAL_ERROR = 207

    @property
    def display(self) -> str:
        return self.name.replace("_", " ").capitalize()


@dataclass(frozen=True, slots=True)
class FieldWarning:
    """A value of an accepted message that was taken in altered, or left out: the message is
    answered AA with an ERR of severity ``W`` naming it (keep what can be understood, say what
    was changed)."""

    location: str
    """ERL of the field, e.g. ``PID^1^8``."""
    code: ErrorCode
    reason: str
    """A short label to count it by, e.g. ``sex_spelling``."""
    text: str
    """What was done, for the sender and the operator, e.g. ``sex 'K' read as F``."""


class HL7Error(TryggheimError):
    """Base of every error raised on purpose by the :mod:`hl7` package."""


class MessageError(HL7Error):
    """A received message that is not processed, with what its negative ACK needs.

    ``code`` goes to ERR-3, ``location`` (an ERL such as ``PID^1^3``, or ``""``) to ERR-2 and
    ``user_message`` to ERR-8 (and MSA-3). :attr:`reject` says which answer fits: ``AR``/``CR``
    (the message itself is unacceptable; resending it unchanged cannot help) or ``AE``/``CE``
    (it could not be processed here and now)."""

    reject: ClassVar[bool] = True

    def __init__(
        self, text: str, *, user_message: str, code: ErrorCode, location: str, hint: str
    ) -> None:
        self.user_message = user_message
        self.code = code
        self.location = location
        super().__init__(text, hint=hint)


class MalformedMessageError(MessageError):
    """HL7 v2 data does not follow the encoding rules (segments, delimiters, escapes, charset).

    ``where`` names the place (e.g. ``MSH-2``, ``segment 3``, ``escape sequence``). ``header``
    is the message's MSH when it could still be read, so that the sender can be answered; it
    is ``None`` when not even that was possible (or not tried: see
    :func:`hl7.message.decode_message`)."""

    def __init__(
        self,
        where: str,
        problem: str,
        *,
        excerpt: str = "",
        code: ErrorCode = ErrorCode.SEGMENT_SEQUENCE_ERROR,
        location: str = "",
        header: Message | None = None,
        hint: str = "the sender does not follow HL7 v2 chapter 2 encoding rules; ask its vendor",
    ) -> None:
        self.where = where
        self.problem = problem
        self.excerpt = excerpt
        self.header = header
        shown = f" near {excerpt[:60]!r}" if excerpt else ""
        super().__init__(
            f"malformed HL7 v2 message: {where}: {problem}{shown}",
            user_message=f"{where}: {problem}",
            code=code,
            location=location,
            hint=hint,
        )

    def with_header(self, header: Message | None) -> MalformedMessageError:
        """The same error, knowing the header of the message it is about."""
        return MalformedMessageError(
            self.where,
            self.problem,
            excerpt=self.excerpt,
            code=self.code,
            location=self.location,
            header=header,
            hint=self.hint,
        )


class UnsupportedMessageError(MessageError):
    """A well-formed message this receiver does not take: its type, trigger event or version."""

    def __init__(self, problem: str, *, code: ErrorCode, location: str) -> None:
        self.problem = problem
        super().__init__(
            f"unsupported HL7 v2 message: {problem}",
            user_message=problem,
            code=code,
            location=location,
            hint="send this interface only the message types and versions it documents",
        )


class MessageContentError(MessageError):
    """A supported message whose content cannot be used: a required field is missing, a value
    has the wrong data type or is not in its table. Answered AE/CE: the sender may fix the data
    in its system and send it again."""

    reject = False

    def __init__(self, problem: str, *, code: ErrorCode, location: str) -> None:
        self.problem = problem
        super().__init__(
            f"HL7 v2 message content: {location or 'message'}: {problem}",
            user_message=problem,
            code=code,
            location=location,
            hint="correct the named field in the sending system and send the message again",
        )


class UnknownPatientError(MessageContentError):
    """The message is about a patient this receiver does not know (HL7 table 0357 code 204)."""

    def __init__(self, identifier: str, *, location: str = "PID^1^3") -> None:
        self.identifier = identifier
        super().__init__(
            f"patient {identifier!r} is not known here; register the patient (ADT) first",
            code=ErrorCode.UNKNOWN_KEY_IDENTIFIER,
            location=location,
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
