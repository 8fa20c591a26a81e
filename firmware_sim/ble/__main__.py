"""Run a virtual radio with one simulated blood-pressure cuff in its own process.

The home gateway (another process) connects to the radio as a central over HCI on TCP. The
first line on stdout is the bumble transport string to use, e.g.
``tcp-client:127.0.0.1:40123``; the last line, on exit, is ``produced=<n> delivered=<n>``.

Example::

    python -m firmware_sim.ble --address C0:10:00:00:00:01 \\
        --reading 128/82/97/66@2025-03-01T08:15:00 --reading 131/85/100/70 --exit-when-delivered
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from decimal import Decimal

from firmware_sim.ble.bp_monitor import CuffReading, SimulatedBloodPressureMonitor
from firmware_sim.ble.radio import VirtualRadio


def parse_reading(text: str) -> CuffReading:
    """``SYS/DIA/MAP/PULSE[@ISO-local-time]``; without a time the cuff's clock is unset."""
    values, _, when = text.partition("@")
    try:
        systolic, diastolic, mean, pulse = (Decimal(v) for v in values.split("/"))
        timestamp = datetime.fromisoformat(when) if when else None
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SYS/DIA/MAP/PULSE[@time]") from error
    return CuffReading(systolic, diastolic, mean, pulse, timestamp)


async def _stdin_closed() -> None:
    """Resolve when stdin reaches EOF, so the simulator dies with the process that started it."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


async def run(args: argparse.Namespace) -> None:
    async with (
        VirtualRadio(tcp_host=args.host, tcp_port=args.port) as radio,
        SimulatedBloodPressureMonitor(radio, args.address, advertising_window=args.window) as cuff,
    ):
        print(radio.central_transport, flush=True)
        for reading in args.reading:
            await cuff.measure(reading)
        waits = []
        if args.exit_when_delivered:
            waits.append(asyncio.ensure_future(cuff.wait_until_delivered()))
        if args.until_stdin_closes:
            waits.append(asyncio.ensure_future(_stdin_closed()))
        if waits:
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        else:
            await asyncio.Event().wait()
        print(f"produced={cuff.readings_produced} delivered={cuff.readings_delivered}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m firmware_sim.ble", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="TCP port for the central (0: free)")
    parser.add_argument("--address", default="C0:10:00:00:00:01", help="cuff's static address")
    parser.add_argument("--window", type=float, default=30.0, help="advertising window, s")
    parser.add_argument("--reading", type=parse_reading, action="append", default=[])
    parser.add_argument("--exit-when-delivered", action="store_true")
    parser.add_argument("--until-stdin-closes", action="store_true")
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
