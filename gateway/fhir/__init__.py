"""HL7 FHIR R4, the Norwegian national path for welfare technology (docs/fhir.md): the one
domain → FHIR mapping (:mod:`~gateway.fhir.resources`, :mod:`~gateway.fhir.document`), offline
validation (:mod:`~gateway.fhir.validation`), loading what they need from the record store
(:mod:`~gateway.fhir.records`) and the read API (:mod:`~gateway.api.routes.fhir`)."""
