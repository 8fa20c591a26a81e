"""Alarm codes: the platform's own alarm code system and its mapping to the Norwegian VKP
(velferdsteknologisk knutepunkt) alert code list.

The VKP alert code system is ``http://ehelse.no/fhir/CodeSystem/vkp-alert-code-v090``, read from
its published source, ``VKP-R4/CodeSystem/vkp-alert-code-v090.codesystem.xml`` in the GitHub
repository HL7Norway/Velferdsteknologi (version 0.9.0, updated 2024-10-10): section 4 *Digitalt
tilsyn* (4.1 Fall ... 4.26) and section 5 *Digital hjemmeoppfølging* (5.1 ... 5.3.2). Technical
alarms about the platform's own equipment (a silent device, a low battery, an offline home
gateway) have no code there (section 1's battery and contact codes are a medication dispenser's)
and keep ``vkp_code`` ``None``: they are not journaled. docs/fhir.md gives the reason for each.
Never put a VKP code here that has not been checked against the published list.
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

    @property
    def vkp_display(self) -> str | None:
        return None if self.vkp_code is None else VKP_ALERT_DISPLAYS[self.vkp_code]


#: The codes of :data:`VKP_ALERT_CODE_SYSTEM` this platform uses, with the list's display text.
VKP_ALERT_DISPLAYS: dict[str, str] = {
    "4.1": "Fall",
    "4.11": "Brannalarm",
    "4.13": "Knappetrykk",
    "4.15": "Dør åpnet",
    "4.17": "Vannalarm",
    "4.19": "Manglende bevegelse",
    "5.1": "Oppsummerende varsel",
    "5.2.1": "Måledata rapportert",
    "5.3.2": "Måling ikke rapportert",
}

#: Alarms on a measured value: VKP 5.2.1 "Måledata rapportert" (an alert about reported data).
_ON_MEASUREMENT = "5.2.1"


def _code(ref: str, number: int, display: str, vkp_code: str | None = None) -> AlarmCode:
    return AlarmCode(ref, number, display, vkp_code)


SPO2_LOW = _code("TRY_ALM_SPO2_LOW", 2001, "SpO2 low", _ON_MEASUREMENT)
SYSTOLIC_HIGH = _code(
    "TRY_ALM_SYSTOLIC_HIGH", 2002, "Systolic blood pressure high", _ON_MEASUREMENT
)
SYSTOLIC_LOW = _code("TRY_ALM_SYSTOLIC_LOW", 2003, "Systolic blood pressure low", _ON_MEASUREMENT)
PULSE_HIGH = _code("TRY_ALM_PULSE_HIGH", 2004, "Pulse high", _ON_MEASUREMENT)
PULSE_LOW = _code("TRY_ALM_PULSE_LOW", 2005, "Pulse low", _ON_MEASUREMENT)
TEMPERATURE_HIGH = _code("TRY_ALM_TEMPERATURE_HIGH", 2006, "Body temperature high", _ON_MEASUREMENT)
GLUCOSE_LOW = _code("TRY_ALM_GLUCOSE_LOW", 2007, "Blood glucose low", _ON_MEASUREMENT)
GLUCOSE_HIGH = _code("TRY_ALM_GLUCOSE_HIGH", 2008, "Blood glucose high", _ON_MEASUREMENT)
WEIGHT_GAIN = _code("TRY_ALM_WEIGHT_GAIN", 2009, "Weight gain", _ON_MEASUREMENT)
MEASUREMENT_MISSED = _code(
    "TRY_ALM_MEASUREMENT_MISSED", 2010, "Scheduled measurement missed", "5.3.2"
)
INACTIVITY = _code("TRY_ALM_INACTIVITY", 2011, "No movement in the home", "4.19")
DOOR_AT_NIGHT = _code("TRY_ALM_DOOR_AT_NIGHT", 2012, "Door opened at night", "4.15")
FALL = _code("TRY_ALM_FALL", 2013, "Fall detected", "4.1")
PANIC = _code("TRY_ALM_PANIC", 2014, "Panic button pressed", "4.13")
SMOKE = _code("TRY_ALM_SMOKE", 2015, "Smoke alarm", "4.11")
WATER_LEAK = _code("TRY_ALM_WATER_LEAK", 2016, "Water leak", "4.17")
DEVICE_SILENT = _code("TRY_ALM_DEVICE_SILENT", 2017, "Device silent")
LOW_BATTERY = _code("TRY_ALM_LOW_BATTERY", 2018, "Device battery low")
GATEWAY_OFFLINE = _code("TRY_ALM_GATEWAY_OFFLINE", 2019, "Home gateway offline")
COMBINED = _code("TRY_ALM_COMBINED", 2020, "Combined condition", "5.1")

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
