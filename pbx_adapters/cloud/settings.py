"""What every cloud PBX's ``[[pbx]]`` entry has besides its credentials."""

from __future__ import annotations

from pydantic import Field

from cti.pbx import PbxSettings


class CloudSettings(PbxSettings):
    api_url: str = Field(..., pattern=r"^https?://[^\s]+$")
    # A webhook whose event is older than this is refused (a replay, or a queue the
    # provider kept for too long): its call is long over.
    max_event_age_seconds: float = Field(600.0, gt=0)
    request_timeout: float = Field(10.0, gt=0, le=60)
    request_attempts: int = Field(3, ge=1, le=10)
    # A call whose every party hung up but whose end the provider never sent is ended
    # this long after its last event.
    end_after_seconds: float = Field(120.0, gt=0)
