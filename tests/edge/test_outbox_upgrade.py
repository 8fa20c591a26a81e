"""An edge agent upgraded with a non-empty outbox loses and doubles nothing (docs/upgrade.md).

The outbox below is what Tryggheim 0.1.0 leaves on the gateway's disk when the agent is stopped
for the upgrade, written out literally (its schema and its JSON bodies), so that a later change
of the outbox or the wire format that cannot read it fails here: seqs 1-3 acknowledged and
deleted, 4-8 waiting (a fall among them), and seq 4 already committed by the platform whose ack
was lost when the agent stopped. The new agent's outbox and uplink deliver the rest through
Mosquitto to the platform's ingest."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from chain import until
from delivery import GATEWAY, make_uplink, make_worker, mqtt_settings, running
from servers import BrokerFixture
from sqlalchemy import select

from edge.outbox import Outbox
from gateway.records.models import ObservationRow
from gateway.records.store import RecordStore
from tryggheim.wire import observation_from_dict


def body(seq: int, code: str = "MDC_PRESS_BLD_NONINV_SYS", value: str = "138") -> str:
    mdc = {"MDC_PRESS_BLD_NONINV_SYS": 150021, "TRY_EVT_FALL": 1001}[code]
    unit = "mm[Hg]" if code.startswith("MDC_") else "1"
    return (
        f'{{"id": "0b7e6a52-1c0e-4d8e-9d55-00000000000{seq}", "gateway_id": "{GATEWAY}", '
        f'"seq": {seq}, "device_id": "C0:10:00:00:00:01", "source": "ble:2A35", '
        f'"code": "{code}", "mdc": {mdc}, "value": "{value}", "unit": "{unit}", '
        f'"time": "2026-11-22T0{seq}:00:00+01:00", "time_source": "device", "flags": []}}'
    )


WAITING = {4: body(4), 5: body(5, value="141"), 6: body(6, "TRY_EVT_FALL", "1"), 7: body(7)}
WAITING[8] = body(8, value="99.5")

OUTBOX_0_1_0 = f"""
CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, urgent INTEGER NOT NULL,
                     body TEXT NOT NULL);
CREATE INDEX outbox_urgent ON outbox (urgent, seq);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE seen (key TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE INDEX seen_at ON seen (at);
INSERT INTO outbox (seq, urgent, body) VALUES
    (1, 0, '{body(1)}'), (2, 0, '{body(2)}'), (3, 0, '{body(3)}'),
    {", ".join(f"({seq}, {int(seq == 6)}, '{text}')" for seq, text in WAITING.items())};
DELETE FROM outbox WHERE seq <= 3;
INSERT INTO meta (key, value) VALUES ('committed_seq', 3), ('committed_at_ms', 1795370522800);
"""


async def test_an_upgraded_agent_delivers_its_old_outbox_once(
    mosquitto: BrokerFixture, store: RecordStore, tmp_path: Path
) -> None:
    path = tmp_path / "outbox.db"
    with sqlite3.connect(path) as db:
        db.executescript(OUTBOX_0_1_0)
    db.close()
    old_rows = {
        seq: observation_from_dict("outbox", json.loads(text), GATEWAY)
        for seq, text in {1: body(1), 2: body(2), 3: body(3), 4: body(4)}.items()
    }
    # What the platform had committed before the upgrade: 1-3 acknowledged, 4 not yet.
    await store.commit_batch(GATEWAY, list(old_rows.values()), datetime.now(UTC))

    outbox = Outbox(path, GATEWAY)  # the new version opens the old file
    assert outbox.depth() == 5 and outbox.committed_seq == 3
    uplink = make_uplink(mqtt_settings(mosquitto, GATEWAY), outbox)
    async with (
        running(make_worker(mqtt_settings(mosquitto, "platform"), store).run(), "ingest"),
        running(uplink.run(), "uplink"),
    ):
        await until(lambda: outbox.depth() == 0, timeout=30, what="the old outbox to drain")
    assert outbox.committed_seq == 8
    outbox.close()

    async with store.session() as s:
        stored = list(await s.scalars(select(ObservationRow).order_by(ObservationRow.seq)))
    assert [row.seq for row in stored] == [1, 2, 3, 4, 5, 6, 7, 8]
    for row in stored:
        original = json.loads(WAITING.get(row.seq) or body(row.seq))
        assert (row.id, row.code, row.value, row.observation().time.isoformat()) == (
            original["id"],
            original["code"],
            original["value"],
            original["time"],
        )
