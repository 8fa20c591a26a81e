"""HL7 v2 on the platform: inbound (receive, parse once, route by message type, apply) and
outbound (queue, compose, send). The wire protocol itself is the top-level hl7 library,
which knows no platform type."""
