"""The names of the 1C objects and fields the connector uses, as the OData interface
publishes them (``Catalog_<name>``, ``Document_<name>``, a reference field as
``<name>_Key``, a tabular section as ``<catalog>_<section>``).

УТ 11, КА 2 and 1C:CRM 3 are built on the same libraries (БСП contact information and
interactions, the partners of УТ), so one set of defaults serves all three; a base that
differs (a renamed object, an added attribute) overrides single names with
``[crm] onec_names``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace


@dataclass(frozen=True, slots=True)
class OneCNames:
    # Who calls: partners, their contact persons, counterparties (legal entities).
    partners: str = "Catalog_Партнеры"
    partner_full_name: str = "НаименованиеПолное"
    partner_manager: str = "ОсновнойМенеджер"  # a Catalog_Пользователи reference
    partner_kind: str = "ЮрФизЛицо"  # Компания / ЧастноеЛицо
    contacts: str = "Catalog_КонтактныеЛицаПартнеров"  # Owner_Key: the partner
    counterparties: str = "Catalog_Контрагенты"  # empty: not searched
    counterparty_partner: str = "Партнер"
    # Each of the three catalogs' contact information (БСП), a tabular section.
    contact_info: str = "КонтактнаяИнформация"
    info_type: str = "Тип"
    info_type_phone: str = "Телефон"
    info_number: str = "НомерТелефона"
    info_presentation: str = "Представление"
    users: str = "Catalog_Пользователи"
    # The 1C user's attribute that holds their extension (empty: onec_users only).
    user_extension: str = ""
    # The call, written back (БСП interactions).
    call_document: str = "Document_ТелефонныйЗвонок"
    call_incoming: str = "Входящий"
    call_address: str = "АбонентКакСвязаться"
    call_contact: str = "АбонентКонтакт"
    call_contact_presentation: str = "АбонентПредставление"
    call_responsible: str = "Ответственный"
    call_subject: str = "Тема"
    call_description: str = "Описание"
    call_importance: str = "Важность"
    call_importance_high: str = "Высокая"
    # Missed calls: a user reminder (БСП "Напоминания пользователя"); empty: none.
    reminders: str = "InformationRegister_НапоминанияПользователя"
    reminder_user: str = "Пользователь"
    reminder_time: str = "ВремяСобытия"
    reminder_due: str = "СрокНапоминания"
    reminder_source: str = "Источник"
    reminder_description: str = "Описание"
    # The partner as the 1C client's navigation links name it.
    partner_link_object: str = "Справочник.Партнеры"

    @classmethod
    def with_overrides(cls, overrides: Mapping[str, str]) -> OneCNames:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"onec_names: unknown names: {', '.join(unknown)}")
        return replace(cls(), **dict(overrides))

    def section(self, catalog: str) -> str:
        """The entity set of a catalog's contact information rows."""
        return f"{catalog}_{self.contact_info}"
