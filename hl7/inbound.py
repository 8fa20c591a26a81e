"""What the platform accepts from the health network, and how a receiver tells resends apart.

:func:`decode_inbound` is the one entry for a received message: versions 2.3 to 2.8, ADT
(:mod:`hl7.adt`) and ORU^R01 (:mod:`hl7.oru_inbound`); anything else raises
:class:`~hl7.errors.UnsupportedMessageError`, answered AR (:func:`hl7.ack.build_nak`).

:func:`dedupe_key` names a message for deduplication: a sender resending a message whose ACK it
missed keeps MSH-10, so sender + MSH-10 identify it. The receiver stores the raw message and its
ACK under that key and answers a resend with the stored ACK instead of processing it twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import tzinfo
from typing import TypeAlias

from hl7.adt import AdtMessage, decode_adt
from hl7.errors import ErrorCode, UnsupportedMessageError
from hl7.message import Message
from hl7.oru_inbound import ReceivedOru, decode_oru

# 2.3, 2.3.1, 2.4, 2.5, 2.5.1 ... 2.8.2. A message without MSH-12 is read as a current one.
_SUPPORTED_VERSION = re.compile(r"2\.[3-8](?:\.[0-9]+)?")

InboundMessage: TypeAlias = AdtMessage | ReceivedOru


@dataclass(frozen=True, slots=True)
class DedupeKey:
    """Sender (MSH-3 sending application, MSH-4 sending facility) and MSH-10, as sent. Raw
    field text: a sender writes the same bytes for the same message, and a raw field never
    fails to unescape."""

    sending_application: str
    sending_facility: str
    control_id: str


def dedupe_key(message: Message) -> DedupeKey | None:
    """The key naming ``message`` among all received ones; ``None`` without MSH-10, when a
    resend cannot be recognised."""
    msh = message.msh
    if not msh.field(10):
        return None
    return DedupeKey(msh.field(3), msh.field(4), msh.field(10))


def check_version(message: Message) -> None:
    """Raise :class:`~hl7.errors.UnsupportedMessageError` unless MSH-12 is 2.3 to 2.8."""
    version = message.version
    if version and not _SUPPORTED_VERSION.fullmatch(version):
        raise UnsupportedMessageError(
            f"HL7 version {version!r} is not accepted here (2.3 to 2.8)",
            code=ErrorCode.UNSUPPORTED_VERSION_ID,
            location="MSH^1^12",
        )


def decode_inbound(message: Message, *, default_zone: tzinfo | None = None) -> InboundMessage:
    """Decode a received message; ``default_zone`` applies to timestamps without a UTC
    offset (HL7 v2: the sender's local time)."""
    check_version(message)
    if message.message_code == "ADT":
        return decode_adt(message, default_zone=default_zone)
    if message.message_code == "ORU":
        return decode_oru(message, default_zone=default_zone)
    raise UnsupportedMessageError(
        f"{message.message_code or 'no message type'} messages are not accepted here "
        "(ADT and ORU^R01 only)",
        code=ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
        location="MSH^1^9",
    )
