"""HL7 v2 out: the durable per-destination queue, the one domain-to-HL7 mapping, and the sender."""
