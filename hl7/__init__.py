"""HL7 v2 for the care platform: tolerant parsing (:mod:`hl7.message`), inbound ADT
(:mod:`hl7.adt`) and ORU^R01 (:mod:`hl7.oru_inbound`) behind one entry (:mod:`hl7.inbound`),
outbound IHE PCD-01 ORU^R01 (:mod:`hl7.oru`), ACKs (:mod:`hl7.ack`), MLLP transport
(:mod:`hl7.mllp`) and a GP-side test peer (:mod:`hl7.gp_peer`)."""
