"""Cloud PBXs: the office's numbers live with a provider that posts call events to the
service's webhooks and takes commands over its HTTP API (Mango Office, Zadarma and
Novofon). The shared part receives the webhooks and turns each provider's view of a
call into core events; each provider's package checks its signatures, keeps its calls
(sans-I/O) and speaks its API.
"""
