"""bench/hl7.py with tiny sizes: it runs every part, prints its JSON line, and every message of
every part was acknowledged and counted (stored raw, processed after the accept ACK,
observations, the durable queue drained after the GP outage)."""

from __future__ import annotations

import json

from bench_run import bench_lines


def test_hl7_bench_acknowledges_and_counts_every_message() -> None:
    lines = bench_lines(
        "hl7.py",
        "--connections",
        "2",
        "--ack-sweep",
        "1,3",
        "--ack-messages",
        "30",
        "--full-messages",
        "20",
        "--outbound-messages",
        "40",
        "--backlog",
        "60",
        "--patients",
        "3",
        "--down-s",
        "0.5",
        "--retry-after-s",
        "0.5",
        "--baseline-s",
        "0.2",
        timeout=120,
    )
    result = json.loads(lines[-1])
    assert result["bench"] == "hl7" and result["ok"] is True
    assert (result["inbound_ack_goal"], result["backlog_goal_s"]) == (2000, 60)
    assert set(result["goals_met"]) == {
        "inbound_ack_msgs_per_s",
        "inbound_ack_msgs_per_s_by_connections",
        "backlog_drain_s",
    }
    # The store-and-ACK path again with 1 and 3 senders, each against a fresh endpoint.
    sweep = result["inbound_ack_by_connections"]
    assert set(sweep) == set(result["goals_met"]["inbound_ack_msgs_per_s_by_connections"])
    assert set(sweep) == {"1", "3"}
    for run in sweep.values():
        assert run["acks"] == {"CA": 30} and run["processed_states"] == {"accepted": 30}
        assert run["ok"] is True and run["msgs_per_s"] > 0

    inbound = result["inbound"]
    ack = inbound["ack"]
    # MSH-15 AL, MSH-16 NE: answered CA once stored, processed afterwards, all of them.
    assert ack["acks"] == {"CA": 30} and "MSH-15 AL" in ack["what"]
    assert (ack["processed"], ack["processed_states"]) == (30, {"accepted": 30})
    assert ack["processed_s"] >= ack["elapsed_s"] > 0
    assert ack["processed_cpu_s"] >= ack["endpoint_cpu_s"]
    assert inbound["full"]["acks"] == {"AA": 20}  # original mode: processed, then answered
    # Every message stored raw: 2 registrations + 2 warm-ups + 30 + 20.
    assert inbound["stored_raw"] == 54
    assert inbound["observations_stored"] == 4 * (2 + 20)
    assert inbound["checks"] == dict.fromkeys(
        ("registered", "stored_raw", "processed", "observations"), True
    )
    for part in (ack, inbound["full"]):
        assert part["msgs_per_s"] > 0 and part["endpoint_cpu_s"] > 0

    outbound = result["outbound"]
    assert outbound["acks"] == {"CA": 40} and outbound["msgs_per_s"] > 0

    backlog = result["backlog"]
    assert backlog["via"].startswith("gateway.hl7.outbound.service")
    assert (backlog["messages"], backlog["acked"], backlog["complete"]) == (60, 60, True)
    assert backlog["states"] == {"acked": 60}
    assert backlog["attempts_while_down"] >= 1  # the GP really was down
    assert backlog["drain_s"] > 0

    for parser in ("hl7apy_parse_message", "ours_decode_message", "ours_decode_inbound"):
        assert result["baseline"][parser]["msgs_per_s"] > 0
