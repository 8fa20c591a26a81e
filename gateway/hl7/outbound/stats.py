"""The counters of the outbound HL7 queue (:mod:`gateway.hl7.outbound.service`), exported as
metrics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Hl7Stats:
    composed: int = 0
    alarm_reports: int = 0
    sent: int = 0
    acked: int = 0
    parked: int = 0
    retries: int = 0
