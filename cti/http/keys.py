"""Typed keys for what the application object carries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from cti.http.api import Api
    from cti.service import Service

SERVICE_KEY: web.AppKey[Service] = web.AppKey("service")
API_KEY: web.AppKey[Api] = web.AppKey("api")
