"""Alarm codes: the platform's own alarm code system and its mapping to the Norwegian VKP
(velferdsteknologisk knutepunkt) alert code list.

The VKP alert code system is ``http://ehelse.no/fhir/CodeSystem/vkp-alert-code-v090``. Only its
section 1 (medication dispenser, "Elektronisk medisineringsstøtte", codes 1 and 1.1 ...) could be
verified from the published implementation guide; none of this platform's rules is a medication
dispenser situation, so no alarm here carries a VKP code yet (``vkp_code`` is ``None``). See
docs/alarms.md. Never put a VKP code here that has not been checked against the published list.
"""

from __future__ import annotations

from dataclasses import dataclass

from tryggheim.errors import UnknownCodeError

#: Code system of the platform's own alarm codes (numbers stable, never reused).
ALARM_CODING_SYSTEM = "TRYGGHEIM-ALARM"
#: The VKP alert code system (FHIR CodeSystem URL, as published for VKP R4).
VKP_ALERT_CODE_SYSTEM = "http://ehelse.no/fhir/CodeSystem/vkp-alert-code-v090"


@dataclass(frozen=True, slots=True)
class AlarmCode:
    ref: str
    number: int
    display: str
    vkp_code: str | None = None
    """Code in :data:`VKP_ALERT_CODE_SYSTEM`, only where verified against the published list."""


def _code(ref: str, number: int, display: str) -> AlarmCode:
    return AlarmCode(ref, number, display)


SPO2_LOW = _code("TRY_ALM_SPO2_LOW", 2001, "SpO2 low")
SYSTOLIC_HIGH = _code("TRY_ALM_SYSTOLIC_HIGH", 2002, "Systolic blood pressure high")
SYSTOLIC_LOW = _code("TRY_ALM_SYSTOLIC_LOW", 2003, "Systolic blood pressure low")
PULSE_HIGH = _code("TRY_ALM_PULSE_HIGH", 2004, "Pulse high")
PULSE_LOW = _code("TRY_ALM_PULSE_LOW", 2005, "Pulse low")
TEMPERATURE_HIGH = _code("TRY_ALM_TEMPERATURE_HIGH", 2006, "Body temperature high")
GLUCOSE_LOW = _code("TRY_ALM_GLUCOSE_LOW", 2007, "Blood glucose low")
GLUCOSE_HIGH = _code("TRY_ALM_GLUCOSE_HIGH", 2008, "Blood glucose high")
WEIGHT_GAIN = _code("TRY_ALM_WEIGHT_GAIN", 2009, "Weight gain")
MEASUREMENT_MISSED = _code("TRY_ALM_MEASUREMENT_MISSED", 2010, "Scheduled measurement missed")
INACTIVITY = _code("TRY_ALM_INACTIVITY", 2011, "No movement in the home")
DOOR_AT_NIGHT = _code("TRY_ALM_DOOR_AT_NIGHT", 2012, "Door opened at night")
FALL = _code("TRY_ALM_FALL", 2013, "Fall detected")
PANIC = _code("TRY_ALM_PANIC", 2014, "Panic button pressed")
SMOKE = _code("TRY_ALM_SMOKE", 2015, "Smoke alarm")
WATER_LEAK = _code("TRY_ALM_WATER_LEAK", 2016, "Water leak")
DEVICE_SILENT = _code("TRY_ALM_DEVICE_SILENT", 2017, "Device silent")
LOW_BATTERY = _code("TRY_ALM_LOW_BATTERY", 2018, "Device battery low")
GATEWAY_OFFLINE = _code("TRY_ALM_GATEWAY_OFFLINE", 2019, "Home gateway offline")
COMBINED = _code("TRY_ALM_COMBINED", 2020, "Combined condition")

ALARM_CODES: dict[str, AlarmCode] = {
    c.ref: c
    for c in (
        SPO2_LOW,
        SYSTOLIC_HIGH,
        SYSTOLIC_LOW,
        PULSE_HIGH,
        PULSE_LOW,
        TEMPERATURE_HIGH,
        GLUCOSE_LOW,
        GLUCOSE_HIGH,
        WEIGHT_GAIN,
        MEASUREMENT_MISSED,
        INACTIVITY,
        DOOR_AT_NIGHT,
        FALL,
        PANIC,
        SMOKE,
        WATER_LEAK,
        DEVICE_SILENT,
        LOW_BATTERY,
        GATEWAY_OFFLINE,
        COMBINED,
    )
}


def alarm_code(ref: str) -> AlarmCode:
    """Look up an alarm code by reference id; unknown ones are a typed error."""
    try:
        return ALARM_CODES[ref]
    except KeyError:
        raise UnknownCodeError(ref, kind="alarm code") from None
