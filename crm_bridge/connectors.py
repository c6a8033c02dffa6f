"""The directory and call reporter that ``[crm]`` asks for, built from the configuration."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from crm_bridge.bitrix24 import Bitrix24CallReporter, Bitrix24Directory
from crm_bridge.http_json import HttpJsonDirectory
from crm_bridge.onec.directory import OneCDirectory
from crm_bridge.onec.reporter import OneCCallReporter
from crm_bridge.resilience import ResilientDirectory
from cti.crm_outbox import CallReporter
from cti.directory import Directory

if TYPE_CHECKING:
    from cti.config import CrmConfig


def build_directory(
    config: CrmConfig, builtin: Directory, region: str = "RU", data_dir: Path | None = None
) -> Directory:
    """``builtin`` for type = "builtin"; otherwise the external connector behind the
    timeout, cache and circuit breaker. The result of an external type has ``close()``
    (and ``start()``, which the 1C connector needs to keep its phone index)."""
    if config.type == "http":
        inner: Directory = HttpJsonDirectory.from_config(config, region)
    elif config.type == "bitrix24":
        inner = Bitrix24Directory.from_config(config, region)
    elif config.type == "onec":
        inner = OneCDirectory.from_config(config, region, data_dir)
    else:
        return builtin
    return ResilientDirectory.from_config(inner, config)


def build_call_reporter(
    config: CrmConfig, directory: Directory, time_zone: str = "Europe/Moscow"
) -> CallReporter | None:
    """The write-back of finished calls into the CRM, when the configuration asks for one:
    Bitrix24 with bitrix24_register_calls, 1C with onec_write_calls (sharing the 1C
    connector ``build_directory`` made)."""
    if config.type == "bitrix24" and config.bitrix24_register_calls:
        return Bitrix24CallReporter.from_config(config)
    inner = getattr(directory, "inner", None)
    if config.type == "onec" and config.onec_write_calls and isinstance(inner, OneCDirectory):
        return OneCCallReporter(
            inner,
            time_zone=config.onec_time_zone or time_zone,
            reminders=config.onec_missed_reminders,
            reminder_minutes=config.onec_reminder_minutes,
            service_url=config.onec_service_url,
        )
    return None
