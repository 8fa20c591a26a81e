"""Settings of the FHIR transport (docs/fhir.md, "Transport"): the HelseID client, and where
each tenant's documents go. Keys are files named here, never values in the settings file."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Self

from pydantic import BaseModel, Field, HttpUrl, model_validator


class HelseIdSettings(BaseModel):
    """The platform as a HelseID machine client: client credentials, ``private_key_jwt``
    client authentication and DPoP-bound access tokens."""

    token_endpoint: HttpUrl
    """HelseID's token endpoint (e.g. ``https://helseid-sts.nhn.no/connect/token``); also the
    ``aud`` of the client assertion."""
    client_id: str = Field(min_length=1, max_length=200)
    client_key_file: Path
    """PEM private key (RSA, or EC P-256) registered for the client in HelseID selvbetjening:
    signs the client assertion (RS256 or ES256)."""
    dpop_key_file: Path
    """PEM EC P-256 private key that signs the DPoP proofs (ES256); its public key is what the
    access tokens are bound to."""
    scope: str = ""
    """Space-separated scopes asked for (e.g. the JFT API's)."""
    resource: str | None = None
    """Resource indicator (RFC 8707) naming the API the token is for, if HelseID asks for one."""
    refresh_before_s: float = Field(default=30.0, ge=0)
    """A token is taken anew this long before it expires."""
    timeout_s: float = Field(default=10.0, gt=0)


class DestinationKind(StrEnum):
    JFT = "jft"
    """Journalføringstjenesten: ``POST {base}/v1/Bundle`` → 202 + ``Location``, polled via
    ``$status``; HelseID token bound with DPoP."""

    VKP = "vkp"
    """Velferdsteknologisk knutepunkt (R4): ``POST {base}/epj/r4/{orgnr}/bundle`` → 200/201
    (not polled); a plain Bearer HelseID token (client credentials, ``private_key_jwt``, no
    DPoP)."""
    PMD = "pmd"
    """Pasientens måledata: ``POST {base}`` of a ``collection`` Bundle of a patient's
    measurements → 200/201 (not polled); HelseID token bound with DPoP."""


class PmdSettings(BaseModel):
    """A tenant's PMD destination and how its consenting patients' measurements are batched
    (docs/fhir.md, "Measurements to PMD")."""

    base_url: HttpUrl
    """The endpoint Bundles are posted to as it is (e.g. ``https://api.pmd.nhn.no/``)."""
    municipality_number: str = Field(pattern=r"^[0-9]{4}$")
    """The tenant's kommunenummer (four digits, e.g. ``"5501"`` Tromsø): every Bundle to PMD
    is tagged with it (``meta.tag``), as PMD's example Bundle is."""
    municipality_name: str | None = Field(default=None, min_length=1, max_length=100)
    """The municipality's name as the tag's ``display`` (e.g. ``"Tromsø"``)."""
    batch_every_s: float = Field(default=900.0, gt=0)
    """A patient's measurements wait at most this long (from the oldest one's arrival) ..."""
    batch_max: int = Field(default=50, ge=2, le=500)
    """... or until this many are waiting: then a Bundle is queued."""


class FhirDestinationSettings(BaseModel):
    kind: DestinationKind = DestinationKind.JFT
    base_url: HttpUrl
    """E.g. ``https://jft.nhn.no``; ``/v1/Bundle`` is added (VKP: ``/epj/r4/{orgnr}/bundle``)."""
    organisation_number: str | None = Field(default=None, pattern=r"^[0-9]{9}$")
    """VKP: the municipality's number in Enhetsregisteret, in the path."""
    helseid: HelseIdSettings | None = None
    """Another HelseID client for this destination (e.g. VKP's, with its scope); default the
    common one."""

    @model_validator(mode="after")
    def _vkp_has_organisation(self) -> Self:
        if self.kind is DestinationKind.VKP and self.organisation_number is None:
            raise ValueError("a VKP destination needs organisation_number (its path has it)")
        return self


class FhirOutboundSettings(BaseModel):
    helseid: HelseIdSettings
    destinations: dict[str, FhirDestinationSettings] = {}
    """Per tenant id: where its closed alarms' documents are journaled. A tenant without one
    sends none (nothing is queued for it)."""
    pmd: dict[str, PmdSettings] = {}
    """Per tenant id: where the measurements of its patients who consented (care plan
    ``pmd_consent``) go. A tenant without one sends none."""
    request_timeout_s: float = Field(default=30.0, gt=0)
    retry_after_s: float = Field(default=15.0, gt=0)
    """First wait before resending after a 5xx, a timeout or a lost connection; it doubles per
    attempt up to ``retry_max_s``. A destination waits meanwhile (its order is kept)."""
    retry_max_s: float = Field(default=600.0, gt=0)
    in_flight: int = Field(default=1, ge=1, le=64)
    """Documents sent to one destination at once. 1: strictly one after another, in order.
    More: sent in order in groups of this many, answers awaited together; a document of a
    group that fails is tried again after its backoff at the head of the next group, so it may
    be journaled after later documents of its group (or alongside those of the next)."""
    poll_after_s: float = Field(default=5.0, gt=0)
    """How long after a 202 (and between polls) ``$status`` is asked."""
    poll_max_s: float = Field(default=300.0, gt=0)
    max_bundle_bytes: int = Field(default=1_000_000, ge=1024)
    """JFT refuses larger requests: a bigger document is parked, not sent."""
    idle_s: float = Field(default=2.0, gt=0)
    """How often the queue is looked at when nothing wakes it."""
