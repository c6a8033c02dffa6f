"""What the base publishes, from its ``$metadata`` (EDMX), checked against what the
connector is configured to use, so that a missing object is named at start-up ("add it
to the OData composition") rather than failing on the first call."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from xml.etree import ElementTree

from crm_bridge.onec.names import OneCNames

STANDARD_CATALOG_FIELDS = ("Ref_Key", "DataVersion", "DeletionMark", "Description")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


@dataclass
class Published:
    """Entity sets and the properties of each (navigation properties included)."""

    sets: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, edmx: bytes) -> Published:
        root = ElementTree.fromstring(edmx)  # noqa: S314 - the base's own metadata
        types: dict[str, set[str]] = {}
        sets: dict[str, str] = {}
        for element in root.iter():
            tag = _local(element.tag)
            if tag in ("EntityType", "ComplexType"):
                types[element.get("Name", "")] = {
                    child.get("Name", "")
                    for child in element
                    if _local(child.tag) in ("Property", "NavigationProperty")
                }
            elif tag == "EntitySet":
                sets[element.get("Name", "")] = element.get("EntityType", "").rsplit(".", 1)[-1]
        return cls({name: types.get(type_name, set()) for name, type_name in sets.items()})

    def has(self, entity_set: str) -> bool:
        return entity_set in self.sets

    def has_field(self, entity_set: str, name: str) -> bool:
        return name in self.sets.get(entity_set, ())

    def composite(self, entity_set: str, name: str) -> bool:
        """A reference of several types is published as ``<name>`` and ``<name>_Type``;
        a reference of one type as ``<name>_Key``."""
        return self.has_field(entity_set, f"{name}_Type")


def _missing(published: Published, entity_set: str, names: Iterable[str]) -> list[str]:
    if not published.has(entity_set):
        return [f"{entity_set} is not published (add it to the OData composition)"]
    absent = [n for n in names if n and not published.has_field(entity_set, n)]
    if not absent:
        return []
    return [f"{entity_set}: {', '.join(absent)} not published (check the name, or add it)"]


def problems(published: Published, names: OneCNames, *, write_calls: bool) -> list[str]:
    """Every configured object or field the base does not publish, one line each."""
    found: list[str] = []
    owners = [
        (names.partners, [names.partner_full_name, f"{names.partner_manager}_Key"]),
        (names.contacts, ["Owner_Key"]),
    ]
    if names.counterparties:
        owners.append((names.counterparties, [f"{names.counterparty_partner}_Key"]))
    info = ["Ref_Key", names.info_type, names.info_number, names.info_presentation]
    for catalog, extra in owners:
        found += _missing(published, catalog, [*STANDARD_CATALOG_FIELDS, *extra])
        found += _missing(published, names.section(catalog), info)
    found += _missing(published, names.users, ["Ref_Key", "Description", names.user_extension])
    if write_calls:
        document = names.call_document
        contact = names.call_contact
        contact_field = (
            f"{contact}_Type" if published.composite(document, contact) else f"{contact}_Key"
        )
        found += _missing(
            published,
            document,
            [
                "Ref_Key",
                "Date",
                names.call_incoming,
                names.call_address,
                contact_field,
                names.call_contact_presentation,
                f"{names.call_responsible}_Key",
                names.call_subject,
                names.call_description,
                names.call_importance,
            ],
        )
        if names.reminders:
            found += _missing(
                published,
                names.reminders,
                [
                    f"{names.reminder_user}_Key",
                    names.reminder_time,
                    names.reminder_due,
                    names.reminder_source,
                    names.reminder_description,
                ],
            )
    return found
