"""Fax: received and sent faxes, stored with their pages."""
