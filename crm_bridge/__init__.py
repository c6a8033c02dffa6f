"""Connectors to external CRMs (Bitrix24, any HTTP/JSON service) behind the core's
``cti.directory.Directory`` interface, with timeouts, a cache and a circuit breaker."""
