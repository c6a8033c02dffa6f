"""1C:Enterprise 8.3 through its standard OData v3 interface (``/odata/standard.odata/``):
who is calling (a local phone index confirmed live), calls written back as
``Document_ТелефонныйЗвонок``, reminders for missed calls. See docs/crm_connectors.md."""
