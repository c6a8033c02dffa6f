"""CTI middleware: joins PBX, GSM modem and fax events with the CRM's clients."""

__version__ = "0.1.0"
