"""CRM bridge: the built-in client directory and connectors to external CRMs."""
