"""Behind a reverse proxy: who the client really is, and whether it came over HTTPS.

Behind nginx every request comes from the proxy's address, so sign-in throttling, the
audit log and the recordings' listen log would all see one client. When the peer is one
of ``[server] trusted_proxies`` (addresses or networks), the client is the last address
in ``X-Forwarded-For`` that is not itself a trusted proxy, and the scheme comes from
``X-Forwarded-Proto`` (media grants are then ``Secure`` cookies). From anyone else both
headers are ignored: a client cannot claim another address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> list[Network]:
    """``["127.0.0.1", "10.0.0.0/8"]`` as networks; ValueError names a bad entry."""
    return [ipaddress.ip_network(entry.strip(), strict=False) for entry in entries]


def _trusted(address: str | None, networks: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in network for network in networks)


def real_client(peer: str | None, forwarded_for: str | None, networks: list[Network]) -> str | None:
    """The client's address: ``peer``, unless it is a trusted proxy that said more."""
    if not forwarded_for or not _trusted(peer, networks):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):  # the proxies append: trust from the right
        if not _trusted(hop, networks):
            return hop
    return hops[0] if hops else peer


def proxy_middleware(trusted: Iterable[str]) -> web.middleware:
    networks = parse_networks(trusted)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not networks or not _trusted(request.remote, networks):
            return await handler(request)
        client = real_client(request.remote, request.headers.get("X-Forwarded-For"), networks)
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        scheme = proto if proto in ("http", "https") else request.scheme
        return await handler(request.clone(remote=client, scheme=scheme))

    return middleware
