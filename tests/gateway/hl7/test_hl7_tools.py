"""``tryggheim hl7 oru`` and ``tryggheim hl7 send``, run as commands: the observations JSON of
``tryggheim ble decode --observations`` becomes an ORU^R01 that validates strictly, and ``send``
delivers a file to a real MLLP peer on loopback and prints its ACK."""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from tlsutil import make_test_ca

from gateway.hl7.outbound.compose import (
    measurement_session,
    oru_for_observations,
    read_observations,
)
from hl7.ack import AckCode, build_ack
from hl7.errors import MLLPTimeoutError
from hl7.message import parse_message
from hl7.mllp import MLLPClient, MLLPServer, ReceivedMessage
from hl7.oru import PatientRef, build_oru_r01
from hl7.strict import validate_strictly
from hl7.tools import ToolInputError, message_from_bytes
from tryggheim.codes import DeviceProfile
from tryggheim.domain import Observation
from tryggheim.errors import ConnectionLost

# Systolic 120, diastolic 80, mean 93 mmHg, 2025-03-01 08:15:00, pulse 64: Blood Pressure
# Measurement (0x2A35) with a time stamp and a pulse rate.
CUFF_VALUE = ["06", "7800", "5000", "5D00", "E907", "0301", "080F00", "4000"]
CUFF = "C0:10:00:00:00:01"


async def _tryggheim(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tryggheim.apps.cli",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_decode_then_oru_then_send(tmp_path: Path) -> None:
    code, decoded, err = await _tryggheim(
        "ble", "decode", "2A35", *CUFF_VALUE, "--observations", "--device-id", CUFF
    )
    assert code == 0, err
    observations = tmp_path / "obs.json"
    observations.write_text(decoded, encoding="utf-8")

    code, oru, err = await _tryggheim(
        "hl7",
        "oru",
        "--observations",
        str(observations),
        "--patient-id",
        "15076500565",
        "--patient-name",
        "Ødegård^Kari",
    )
    assert code == 0, err
    lines = oru.splitlines()
    assert [line[:3] for line in lines] == ["MSH", "PID", "PV1", "OBR", *["OBX"] * 5]
    message = message_from_bytes(oru.encode())
    validate_strictly(message)
    parsed = parse_message(message)
    assert [o.value(5) for o in list(parsed.all("OBX"))[1:]] == ["120", "80", "93", "64"]
    obr = parsed.first("OBR")
    assert obr is not None and obr.value(3, 3) == "C01000FFFE000001"
    file = tmp_path / "oru.hl7"
    file.write_text(oru, encoding="utf-8")

    received: list[ReceivedMessage] = []

    async def accept(message: ReceivedMessage) -> bytes:
        received.append(message)
        ack = build_ack(message.message, AckCode.AA, "", datetime.now().astimezone(), "ACK1")
        return ack.encode()

    async with MLLPServer(accept) as server:
        code, ack, err = await _tryggheim(
            "hl7", "send", "--host", "127.0.0.1", "--port", str(server.port), str(file)
        )
        assert code == 0, err
        # The peer got the message with \r terminators, and its ACK is printed as received.
        assert len(received) == 1
        assert received[0].raw.decode() == message
        assert ack.splitlines()[1] == f"MSA|CA|{parsed.control_id}"

        async def refuse(message: ReceivedMessage) -> bytes:
            now = datetime.now().astimezone()
            return build_ack(message.message, AckCode.AE, "unknown patient", now, "A2").encode()

        async with MLLPServer(refuse) as refusing:
            code, ack, err = await _tryggheim(
                "hl7", "send", "--host", "127.0.0.1", "--port", str(refusing.port), "-",
                stdin=oru.encode(),
            )  # fmt: skip
        assert code == 1, err
        assert ack.splitlines()[1].startswith(f"MSA|CE|{parsed.control_id}")


async def test_send_to_nobody_is_a_one_line_error(tmp_path: Path) -> None:
    file = tmp_path / "m.hl7"
    file.write_text("MSH|^~\\&|A|B|C|D|20250301081500+0100||ORU^R01^ORU_R01|X1|P|2.6\n")
    async with MLLPServer(_never_ack) as server:
        port = server.port
    code, out, err = await _tryggheim(
        "hl7", "send", "--host", "127.0.0.1", "--port", str(port), str(file)
    )
    assert code == 2 and out == ""
    assert err.startswith("tryggheim: 127.0.0.1:") and len(err.splitlines()) == 1


async def _never_ack(message: ReceivedMessage) -> bytes:
    raise AssertionError("not reached")


def test_oru_from_observations_with_an_eui64(tmp_path: Path) -> None:
    file = tmp_path / "obs.json"
    file.write_text(
        json.dumps(
            {
                "device_id": "cli",
                "code": "MDC_TEMP_BODY",
                "value": "37.20",
                "unit": "Cel",
                "time": "2025-03-01T08:15:00+01:00",
                "seq": None,
            }
        )
    )
    text = oru_for_observations(
        read_observations(file),
        national_id="41017012345",
        patient_name="Berg",
        device_eui64="00:1b:dc:0f:aa:01",
        now=datetime.now().astimezone(),
    )
    validate_strictly(text)
    parsed = parse_message(text)
    obx = list(parsed.all("OBX"))
    assert obx[0].value(3, 2) == "MDC_DEV_SPEC_PROFILE_TEMP"
    assert obx[1].value(5) == "37.20"
    assert {o.value(18) for o in obx} == {"001BDCFFFE0FAA01"}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("not json", "cannot read JSON"),
        ("[]", "holds no observations"),
        ('[{"code": "MDC_TEMP_BODY"}]', "missing 'value'"),
        (
            '[{"device_id": "d", "code": "NOPE", "value": "1", "unit": "Cel",'
            ' "time": "2025-03-01T08:15:00+01:00"}]',
            "NOPE",
        ),
        (
            '[{"device_id": "d", "code": "MDC_TEMP_BODY", "value": "1", "unit": "Cel",'
            ' "time": "2025-03-01T08:15:00"}]',
            "time zone",
        ),
    ],
)
def test_bad_observation_files(tmp_path: Path, content: str, problem: str) -> None:
    file = tmp_path / "obs.json"
    file.write_text(content)
    with pytest.raises(ToolInputError, match=problem):
        read_observations(file)


def test_bad_message_files() -> None:
    with pytest.raises(ToolInputError, match="MSH"):
        message_from_bytes(b"PID|1\n")
    with pytest.raises(ToolInputError, match="UTF-8"):
        message_from_bytes(b"MSH|^~\\&|\xff\n")
    assert message_from_bytes(b"\xef\xbb\xbfMSH|^~\\&|A\r\n\r\nPID|1\n") == "MSH|^~\\&|A\rPID|1\r"


async def test_gp_peer_serves_mllp_over_tls(tmp_path: Path) -> None:
    """``tryggheim hl7 gp-peer --tls-cert --tls-key`` (the compose stack's GP): an ORU^R01 over
    TLS verified for the peer's name is accepted and logged; plain MLLP is not."""
    files = make_test_ca(tmp_path / "tls")
    log_file = tmp_path / "received.hl7"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tryggheim.apps.cli", "hl7", "gp-peer", "--port", "0",
        "--tls-cert", str(files.certfile), "--tls-key", str(files.keyfile),
        "--log", str(log_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        assert "MLLP over TLS" in line, line
        port = int(line.split(":")[1].split()[0])
        device, metrics = measurement_session(
            [
                Observation(
                    "gw", CUFF, "ble:2A35", "MDC_PRESS_BLD_NONINV_SYS", Decimal("120"),
                    "mm[Hg]", datetime(2025, 3, 1, 8, 15, tzinfo=UTC),
                )
            ],
            CUFF,
            DeviceProfile.BLOOD_PRESSURE,
        )  # fmt: skip
        oru = build_oru_r01(
            patient=PatientRef("15076500565", "Ødegård", "Kari"),
            observations=metrics,
            device=device,
            sending_app="TRYGGHEIM",
            sending_facility="K",
            receiving_app="EPJ",
            receiving_facility="L",
            control_id="GPTLS1",
            now=datetime(2025, 3, 1, 8, 16, tzinfo=UTC),
        )  # fmt: skip
        client_ctx = ssl.create_default_context(cafile=str(files.cafile))
        async with MLLPClient(
            "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
        ) as client:
            ack = await client.send(oru, timeout=10)
        assert ack.accepted and ack.acked_control_id == "GPTLS1"
        assert log_file.read_bytes() == oru.encode("utf-8") + b"\n"
        with pytest.raises((ConnectionLost, MLLPTimeoutError)):
            async with MLLPClient("127.0.0.1", port) as plain:
                await plain.send(oru, timeout=5)
    finally:
        process.terminate()
        await process.wait()


async def test_gp_peer_wants_both_tls_files(tmp_path: Path) -> None:
    code, out, err = await _tryggheim("hl7", "gp-peer", "--tls-cert", str(tmp_path / "c.pem"))
    assert code == 2 and out == ""
    assert err.strip() == "tryggheim: give both --tls-cert and --tls-key, or neither"
