"""The scripted PBX's options: its script."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cti.domain import LineState, Outcome
from cti.pbx import PbxSettings


class Step(BaseModel):
    """One thing the scripted PBX reports."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    after: float = Field(0.0, ge=0, le=3600)  # seconds after the previous step
    event: Literal["ring", "answer", "transfer", "end", "line"]
    call: str = Field("", max_length=64)  # the script's name for the call
    extension: str = Field("", pattern=r"^[0-9]{0,10}$")
    number: str = ""  # ring: the caller, E.164 or as the PBX would deliver it
    name: str = ""  # ring: the caller ID name
    outcome: Outcome | None = None  # end: default answered if it was, else no_answer
    state: LineState | None = None  # line: the extension's new state


class ScriptedSettings(PbxSettings):
    type: Literal["scripted"]
    script: list[Step] = Field(default_factory=list)
