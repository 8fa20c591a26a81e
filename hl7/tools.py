"""The work behind ``tryggheim hl7 oru`` and ``tryggheim hl7 send`` (argument parsing stays in
:mod:`tryggheim.apps.cli`).

``hl7 oru`` reads the JSON that ``tryggheim ble decode ... --observations`` prints (a list of
Observations in the wire format of :func:`tryggheim.wire.observation_to_dict`; ``seq`` may be
null) and builds one ORU^R01 (:func:`hl7.oru.build_oru_r01`) for them: the device profile comes
from the codes, the device from ``--device-eui64`` or else the observations' ``device_id``
(which must then be an EUI-64 or a MAC address). The message is printed one segment per line
(``\\n``) so that a terminal shows it; ``hl7 send`` accepts that form and sends ``\\r``.

``hl7 send`` sends one message over MLLP and returns the raw ACK frame, so that the command can
print it as received.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from hl7.ack import Ack, parse_ack
from hl7.errors import MalformedMessageError, MLLPTimeoutError
from hl7.message import parse_header
from hl7.mllp import MLLPDecoder, encode_frame
from hl7.oru import DeviceRef, PatientRef, build_oru_r01, device_profile_for, eui64
from tryggheim.domain import Observation, TimeSource
from tryggheim.errors import ConnectionLost, TryggheimError


class ToolInputError(TryggheimError):
    def __init__(self, what: str, problem: str) -> None:
        self.what = what
        self.problem = problem
        super().__init__(f"{what}: {problem}", hint="see tryggheim hl7 --help")


def read_observations(path: Path) -> list[Observation]:
    """The observations in a JSON file (a list, or one object) as ``ble decode`` prints them."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ToolInputError(str(path), f"cannot read JSON: {exc}") from None
    items = data if isinstance(data, list) else [data]
    if not items:
        raise ToolInputError(str(path), "holds no observations")
    return [_observation(str(path), n, item) for n, item in enumerate(items, start=1)]


def _observation(where: str, n: int, item: Any) -> Observation:
    if not isinstance(item, dict):
        raise ToolInputError(f"{where}: observation {n}", "not a JSON object")
    try:
        value = Decimal(str(item["value"]))
        if not value.is_finite():
            raise ValueError(f"value {item['value']!r} is not finite")
        seq = item.get("seq")
        return Observation(
            id=str(item.get("id") or uuid.uuid4()),
            gateway_id=str(item.get("gateway_id") or "cli"),
            seq=seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
            device_id=str(item["device_id"]),
            source=str(item.get("source") or "cli"),
            code=str(item["code"]),
            value=value,
            unit=str(item["unit"]),
            time=datetime.fromisoformat(str(item["time"])),
            time_source=TimeSource(item.get("time_source") or TimeSource.DEVICE.value),
            flags=tuple(str(f) for f in item.get("flags") or ()),
        )
    except KeyError as exc:
        raise ToolInputError(f"{where}: observation {n}", f"missing {exc.args[0]!r}") from None
    except (InvalidOperation, TryggheimError, ValueError) as exc:
        raise ToolInputError(f"{where}: observation {n}", str(exc)) from None


def parse_patient_name(text: str) -> tuple[str, str]:
    """``FAMILY^GIVEN`` (the given name may be left out)."""
    family, _, given = text.partition("^")
    if not family.strip() or "^" in given:
        raise ToolInputError("--patient-name", f"{text!r} is not FAMILY^GIVEN")
    return family.strip(), given.strip()


def oru_for_observations(
    observations: Sequence[Observation],
    *,
    national_id: str,
    patient_name: str,
    device_eui64: str | None,
    now: datetime,
    sending_app: str = "TRYGGHEIM",
    sending_facility: str = "TRYGGHEIM",
    receiving_app: str = "GP",
    receiving_facility: str = "GP",
) -> str:
    """One ORU^R01 (``\\r`` terminators) for the observations of one device."""
    family, given = parse_patient_name(patient_name)
    if device_eui64 is not None:
        device_id = eui64(device_eui64)
        observations = [replace(obs, device_id=device_id) for obs in observations]
    else:
        devices = {obs.device_id for obs in observations}
        if len(devices) != 1:
            raise ToolInputError("observations", f"from {len(devices)} devices; give one")
        (device_id,) = devices
    return build_oru_r01(
        patient=PatientRef(national_id, family, given),
        observations=observations,
        device=DeviceRef(device_id, device_profile_for(observations)),
        sending_app=sending_app,
        sending_facility=sending_facility,
        receiving_app=receiving_app,
        receiving_facility=receiving_facility,
        control_id=uuid.uuid4().hex[:20],
        now=now,
    )


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
