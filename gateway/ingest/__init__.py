"""Ingest: the MQTT workers that commit gateways' batches exactly once, and the export of
committed readings to the time-series store."""
