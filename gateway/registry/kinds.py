"""Which kinds of medical device the registry pairs: those with an IEEE 11073 device profile
(the kinds themselves are the kernel's one :class:`tryggheim.codes.DeviceKind`). Used by the API
and by the provisioning file alike."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

from tryggheim import codes


def _kind_by_old_name(value: object) -> object:
    """``scale``: this API's name of a weight scale until the platform and the edge shared one
    set of kind names (2026-12); admin tools of that time may still send it."""
    return codes.DeviceKind.WEIGHT_SCALE if value == "scale" else value


def profile_of(kind: codes.DeviceKind) -> codes.DeviceProfile:
    """The IEEE 11073 profile the registry stores for a paired device of this kind."""
    if kind.profile is None:
        raise ValueError(f"{kind.value} has no IEEE 11073 device profile: it cannot be paired")
    return kind.profile


def _pairable(kind: codes.DeviceKind) -> codes.DeviceKind:
    profile_of(kind)
    return kind


#: A kind of medical device the registry can pair: one with an IEEE 11073 profile.
PairableKind = Annotated[
    codes.DeviceKind,
    BeforeValidator(_kind_by_old_name),
    AfterValidator(_pairable),
    WithJsonSchema(
        {
            "type": "string",
            "enum": [k.value for k in codes.DeviceKind if k.profile is not None],
            "description": "The old name `scale` is accepted for `weight_scale`.",
        }
    ),
]
