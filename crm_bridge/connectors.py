"""The directory and call reporter that ``[crm]`` asks for, built from the configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crm_bridge.bitrix24 import Bitrix24CallReporter, Bitrix24Directory
from crm_bridge.http_json import HttpJsonDirectory
from crm_bridge.resilience import ResilientDirectory
from cti.directory import Directory

if TYPE_CHECKING:
    from cti.config import CrmConfig


def build_directory(config: CrmConfig, builtin: Directory, region: str = "RU") -> Directory:
    """``builtin`` for type = "builtin"; otherwise the external connector behind the
    timeout, cache and circuit breaker. The result of an external type has ``close()``."""
    if config.type == "http":
        inner: Directory = HttpJsonDirectory.from_config(config, region)
    elif config.type == "bitrix24":
        inner = Bitrix24Directory.from_config(config, region)
    else:
        return builtin
    return ResilientDirectory.from_config(inner, config)


def build_call_reporter(config: CrmConfig) -> Bitrix24CallReporter | None:
    """The Bitrix24 write-back when type = "bitrix24" and bitrix24_register_calls is on."""
    if config.type != "bitrix24" or not config.bitrix24_register_calls:
        return None
    return Bitrix24CallReporter.from_config(config)
