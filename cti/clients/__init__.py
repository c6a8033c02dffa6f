"""The product's own client directory: clients, their phones, contacts and responsible
managers, their history and callback tasks, and contact import/export.

External CRMs (``crm_bridge``) answer the same ``cti.directory.Directory`` questions."""
