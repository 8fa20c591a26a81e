"""Decodes per second per GATT characteristic, as one JSON line.

Run: ``.venv/bin/python bench/ble_decode.py [--seconds 0.3]``. Each characteristic decodes a
representative payload (all optional fields present, so the slowest path) in a
``time.perf_counter`` loop for about ``--seconds``; the result is
``{"bench": "ble_decode", "decodes_per_s": {"2A35": ..., ...}, "python": "3.11.7"}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

from edge.ble.gatt.registry import CHARACTERISTICS

PAYLOADS: dict[int, str] = {
    0x2A35: "1e 8000 5200 6100 e907 03 01 08 0f 00 4200 01 0400",
    0x2A36: "1e 9800 ff07 ff07 e907 03 01 08 0f 00 4200 01 0000",
    0x2A37: "1f 4800 3412 0004 cd03 e003",
    0x2A1C: "06 880e00fe e907 03 01 08 10 20 03",
    0x2A9D: "0e b036 e907 03 01 07 1e 05 02 e500 d606",
    0x2A9E: "bf010000",
    0x2A5E: "0f c5f3 4800 e907 03 01 09 00 00 8000 200000 17f0",
    0x2A5F: "1f 6100 4000 5f00 5000 6000 4e00 2000 020000 0cf0",
    0x2A18: "1f 0c00 e907 03 01 07 2d 00 c4ff 38c0 11 0100",
    0x2A34: "ff 0c00 00 01 2dd0 02 51 0807 3c 01 04d0 3ef0",
    0x2A52: "06 00 01 01",
    0x2A19: "64",
    0x2A2B: "e907 03 01 08 0f 1e 06 80 03",
    0x2A08: "e907 03 01 08 0f 1e",
}


def rate(uuid16: int, seconds: float) -> int:
    decode = CHARACTERISTICS[uuid16].decode
    data = bytes.fromhex(PAYLOADS[uuid16])
    batch = 1000  # amortise the clock reads over many decodes
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while (now := time.perf_counter()) < deadline:
        for _ in range(batch):
            decode(data)
        count += batch
    return round(count / (now - start))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.3, help="per characteristic")
    args = parser.parse_args()
    assert set(PAYLOADS) == set(CHARACTERISTICS), "every characteristic needs a payload"
    rates = {f"{uuid16:04X}": rate(uuid16, args.seconds) for uuid16 in PAYLOADS}
    print(
        json.dumps(
            {"bench": "ble_decode", "decodes_per_s": rates, "python": platform.python_version()}
        )
    )


if __name__ == "__main__":
    main()
