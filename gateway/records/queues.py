"""What the outbound queues (HL7 v2 and FHIR) share: the backoff after a failed attempt; a
message a person looks up or requeues is either there for her tenant or not, and only a parked
one may be sent again."""

from __future__ import annotations

from datetime import timedelta

from tryggheim.errors import TryggheimError


def backoff(attempts: int, first: float, most: float) -> timedelta:
    """Wait after the ``attempts``-th failed attempt: ``first``, doubling, at most ``most``."""
    exponent = min(max(attempts - 1, 0), 32)
    return timedelta(seconds=min(first * 2**exponent, most))


class QueuedMessageNotFound(TryggheimError):
    """No such message in the queue, or another tenant's (the same answer: 404)."""

    def __init__(self, queue: str, message_id: int) -> None:
        self.queue = queue
        self.message_id = message_id
        super().__init__(f"no {queue} message {message_id}", hint="list them with ?state=parked")


class QueuedMessageNotParked(TryggheimError):
    """Only a parked message (refused by the receiver) waits for a person (409)."""

    def __init__(self, queue: str, message_id: int, state: str) -> None:
        self.queue = queue
        self.message_id = message_id
        self.state = state
        super().__init__(
            f"{queue} message {message_id} is {state}", hint="only a parked one can be sent again"
        )
