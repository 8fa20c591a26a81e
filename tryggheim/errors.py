"""The platform's exception hierarchy. Every error carries the data that caused it and a hint
that tells the user (a nurse, an integrator, municipality IT) what to do about it."""

from __future__ import annotations


class TryggheimError(Exception):
    """Base of every error this project raises on purpose."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} (hint: {self.hint})" if self.hint else text


class ConfigError(TryggheimError):
    """A configuration file or setting is wrong; names the file and the key."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        super().__init__(f"{source}: {key}: {problem}", hint="fix the named key and start again")


class UnknownCodeError(TryggheimError):
    def __init__(self, code: str, *, kind: str = "code") -> None:
        self.code = code
        self.kind = kind
        super().__init__(
            f"unknown {kind} {code!r}", hint="see docs/codes.md for the codes the platform knows"
        )


class DecodeError(TryggheimError):
    """Bytes or text from a device or peer could not be decoded. ``field`` names what broke."""

    def __init__(self, what: str, field: str, problem: str) -> None:
        self.what = what
        self.field = field
        self.problem = problem
        super().__init__(
            f"cannot decode {what}: {field}: {problem}",
            hint="the sender produced data that does not follow its specification",
        )


class ImplausibleValueError(TryggheimError):
    """A value that no device of its kind can measure, or one in a unit that does not fit its
    code (systolic pressure in kg): refused rather than stored or alarmed on."""

    def __init__(self, code: str, unit: str, problem: str) -> None:
        self.code = code
        self.unit = unit
        self.problem = problem
        super().__init__(
            f"{code} in {unit}: {problem}",
            hint="see docs/codes.md for each code's units and the range of its values",
        )


class PayloadError(TryggheimError):
    """An MQTT payload or API body does not follow the platform's wire contract."""

    def __init__(self, topic: str, problem: str) -> None:
        self.topic = topic
        self.problem = problem
        super().__init__(
            f"bad payload on {topic}: {problem}", hint="see docs/wire.md for the message formats"
        )


class ConnectionLost(TryggheimError):
    """A network peer (broker, device, MLLP peer, database) went away or could not be reached."""

    def __init__(self, peer: str, reason: str) -> None:
        self.peer = peer
        self.reason = reason
        super().__init__(f"{peer}: {reason}", hint="the connection is retried automatically")


class NaiveTimeError(TryggheimError):
    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what} has no time zone", hint="every time in Tryggheim is timezone-aware"
        )
