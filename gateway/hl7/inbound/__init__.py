"""HL7 v2 in: the MLLP endpoint stores every message first, then a processor parses, routes by
MSH-9 and applies it."""
