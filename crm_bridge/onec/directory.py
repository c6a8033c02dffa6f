"""``Directory`` over a 1C base: a number is looked up in the local phone index, and each
hit is confirmed live (one request for the object with its contact information, one for
its partner when the hit is a contact person or a counterparty, one for the responsible
manager, remembered for ten minutes). An unknown number costs 1C nothing.

Which 1C user is which extension: ``[crm] onec_users`` (1C user reference → extension)
and/or a user attribute (``onec_names.user_extension``). A partner without a manager is
still a client (no manager); a partner marked for deletion is nobody.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crm_bridge.onec.links import OpenIn, object_link
from crm_bridge.onec.metadata import Published, problems
from crm_bridge.onec.names import OneCNames
from crm_bridge.onec.odata import ODataClient, OneCError, ref_of
from crm_bridge.onec.phone_index import Owner, OwnerKind, PhoneIndex, numbers_in
from crm_bridge.onec.refresh import refresh_index
from cti.backoff import delay_for
from cti.directory import Found, Match, ResponsibleManager, SharedNumber, search_by_number

if TYPE_CHECKING:
    from cti.config import CrmConfig

log = logging.getLogger("crm_bridge.onec")

USER_CACHE_SECONDS = 600.0
MOST_HITS_CONFIRMED = 10  # owners of one number asked about; more is a shared switchboard


@dataclass(frozen=True, slots=True)
class Resolved:
    """Who a number belongs to in 1C: the partner (or a counterparty without one), the
    contact person when the number is theirs."""

    partner: dict[str, Any]
    partner_catalog: str
    contact: dict[str, Any] | None = None

    @property
    def partner_ref(self) -> str:
        return str(ref_of(self.partner.get("Ref_Key")))


class OneCDirectory:
    def __init__(
        self,
        client: ODataClient,
        names: OneCNames | None = None,
        *,
        region: str = "RU",
        users: Mapping[str, str] | None = None,
        open_in: OpenIn = "thin",
        thin_client: str = "",
        web_client: str = "",
        refresh_seconds: float = 300.0,
        snapshot: Path | None = None,
        write_calls: bool = False,
        clock: Any = time.monotonic,
    ) -> None:
        self.client = client
        self.names = names or OneCNames()
        self.region = region
        self.extensions = {str(ref_of(k)): v for k, v in (users or {}).items() if ref_of(k)}
        self.open_in, self.thin_client, self.web_client = open_in, thin_client, web_client
        self.refresh_seconds = refresh_seconds
        self.snapshot = snapshot
        self.write_calls = write_calls
        self._clock = clock
        self.index = PhoneIndex.load(snapshot) if snapshot else PhoneIndex()
        self.published: Published | None = None
        self.problems: list[str] = []
        self._managers: dict[str, tuple[float, ResponsibleManager]] = {}
        self._task: asyncio.Task[None] | None = None
        self._refreshing = asyncio.Lock()
        self.refreshed_at: float | None = None
        self.refresh_took: float | None = None
        self.refresh_error: str | None = None
        self.refreshes = 0

    @classmethod
    def from_config(
        cls, config: CrmConfig, region: str = "RU", data_dir: Path | None = None
    ) -> OneCDirectory:
        if not config.onec_url:
            raise ValueError('onec_url is required when type = "onec"')
        password = config.onec_password.get_secret_value() if config.onec_password else ""
        client = ODataClient(
            config.onec_url,
            config.onec_username,
            password,
            # Lookups are bounded by timeout_ms in the resilience layer; the index
            # refresh and the write-back by this.
            timeout_seconds=max(config.timeout_ms / 1000 * 5, 30.0),
            page_size=config.onec_page_size,
        )
        return cls(
            client,
            OneCNames.with_overrides(config.onec_names),
            region=region,
            users=config.onec_users,
            open_in=config.onec_open_in,
            thin_client=config.onec_thin_client,
            web_client=config.onec_web_client,
            refresh_seconds=config.onec_refresh_seconds,
            snapshot=data_dir / "onec-phone-index.json" if data_dir else None,
            write_calls=config.onec_write_calls,
        )

    # -- the life of the connector -----------------------------------------------------

    async def start(self) -> None:
        """Read the metadata and keep the index fresh, in the background: a base that is
        down at start-up delays the index, not the service."""
        if self._task is None:
            self._task = asyncio.create_task(self._keep_fresh(), name="1C phone index")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.client.close()

    async def _keep_fresh(self) -> None:
        failures = 0
        while True:
            try:
                await self.refresh_now()
                failures = 0
                delay = self.refresh_seconds
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self.refresh_error = str(exc) or type(exc).__name__
                delay = min(delay_for(failures, base=5.0, most=self.refresh_seconds), 300.0)
                log.warning("1C phone index refresh failed; again in %.0f s: %s", delay, exc)
            await asyncio.sleep(delay)

    async def ensure_metadata(self) -> Published:
        """The base's ``$metadata``, read once; what it lacks is logged, one line each."""
        if self.published is None:
            published = Published.parse(await self.client.metadata())
            self.problems = problems(published, self.names, write_calls=self.write_calls)
            for problem in self.problems:
                log.error("1C OData: %s", problem)
            self.published = published
        return self.published

    def _sources(self, published: Published) -> list[tuple[OwnerKind, str]]:
        names = self.names
        wanted: list[tuple[OwnerKind, str]] = [
            ("partner", names.partners),
            ("contact", names.contacts),
            ("counterparty", names.counterparties),
        ]
        return [
            (kind, catalog)
            for kind, catalog in wanted
            if catalog and published.has(catalog) and published.has(names.section(catalog))
        ]

    async def refresh_now(self) -> None:
        async with self._refreshing:
            published = await self.ensure_metadata()
            started = self._clock()
            report = await refresh_index(
                self.client, self.names, self.index, self._sources(published), self.region
            )
            self.refresh_took = self._clock() - started
            self.refreshed_at, self.refresh_error = self._clock(), None
            self.refreshes += 1
            if self.snapshot is not None and (report.changed or report.removed):
                await asyncio.to_thread(self.index.save, self.snapshot)
            log.info(
                "1C phone index refreshed",
                extra={
                    "fields": {
                        "owners": self.index.owners,
                        "numbers": len(self.index),
                        "changed": report.changed,
                        "removed": report.removed,
                        "seconds": round(self.refresh_took, 3),
                    }
                },
            )

    def stats(self) -> dict[str, Any]:
        return {
            "type": "onec",
            "index_numbers": len(self.index),
            "index_owners": self.index.owners,
            "index_ready": self.refreshes > 0 or self.index.owners > 0,
            "index_refresh_seconds": self.refresh_took,
            "index_age_seconds": None
            if self.refreshed_at is None
            else round(self._clock() - self.refreshed_at, 1),
            "index_error": self.refresh_error,
            "metadata_problems": list(self.problems),
        }

    # -- who is calling ------------------------------------------------------------------

    async def lookup(self, number: str) -> Found:
        found = await self.resolve(number)
        if isinstance(found, list):
            return SharedNumber(
                tuple((f"partner:{r.partner_ref}", self.client_name(r.partner)) for r in found)
            )
        if found is None:
            return None
        return await self.match(found)

    async def search(self, text: str, limit: int = 20) -> list[Match]:
        """A phone number only (a name search would be a free-text scan in 1C)."""
        return await search_by_number(self, text, self.region, limit)

    async def resolve(self, number: str) -> Resolved | list[Resolved] | None:
        """The partner (and contact) behind a number; several when it is shared."""
        if self.index.owners == 0 and self.refreshes == 0:
            raise OneCError("lookup", None, "the phone index is not loaded yet")
        by_partner: dict[str, Resolved] = {}
        for owner in self.index.find(number)[:MOST_HITS_CONFIRMED]:
            resolved = await self._confirm(owner, number)
            if resolved is None:
                continue
            known = by_partner.get(resolved.partner_ref)
            if known is None or (known.contact is None and resolved.contact is not None):
                by_partner[resolved.partner_ref] = resolved
        if not by_partner:
            return None
        if len(by_partner) > 1:
            return list(by_partner.values())
        return next(iter(by_partner.values()))

    def _catalog(self, kind: OwnerKind) -> str:
        names = self.names
        return {"partner": names.partners, "contact": names.contacts}.get(
            kind, names.counterparties
        )

    def _select(self, catalog: str, extra: list[str]) -> list[str]:
        wanted = ["Ref_Key", "DataVersion", "DeletionMark", "Description", *extra]
        wanted.append(self.names.contact_info)
        if self.published is None:
            return wanted
        return [f for f in wanted if self.published.has_field(catalog, f)]

    def _partner_fields(self) -> list[str]:
        names = self.names
        return [names.partner_full_name, f"{names.partner_manager}_Key", names.partner_kind]

    async def _confirm(self, owner: Owner, number: str) -> Resolved | None:
        """Ask 1C whether the owner still has the number (keeping the index current)."""
        names = self.names
        catalog = self._catalog(owner.kind)
        extra = {
            "partner": self._partner_fields(),
            "contact": ["Owner_Key"],
            "counterparty": [
                f"{names.counterparty_partner}_Key",
                names.partner_full_name,
                f"{names.partner_manager}_Key",
            ],
        }[owner.kind]
        row = await self.client.entity(catalog, owner.ref, self._select(catalog, extra))
        if row is None or row.get("DeletionMark") is True:
            self.index.remove(owner)
            return None
        numbers = self._numbers(row)
        self.index.put(owner, str(row.get("DataVersion") or ""), numbers)
        if number not in numbers:
            return None
        if owner.kind == "partner":
            return Resolved(row, catalog)
        link_field = "Owner_Key" if owner.kind == "contact" else f"{names.counterparty_partner}_Key"
        partner_ref = ref_of(row.get(link_field))
        if partner_ref is None:
            # A counterparty without a partner is the client itself; a contact person
            # without an owner is nobody's.
            return Resolved(row, catalog) if owner.kind == "counterparty" else None
        partner = await self.client.entity(
            names.partners, partner_ref, self._select(names.partners, self._partner_fields())
        )
        if partner is None or partner.get("DeletionMark") is True:
            return None
        return Resolved(partner, names.partners, row if owner.kind == "contact" else None)

    def _numbers(self, row: dict[str, Any]) -> set[str]:
        names = self.names
        found: set[str] = set()
        for line in row.get(names.contact_info) or ():
            if isinstance(line, dict) and line.get(names.info_type) == names.info_type_phone:
                found |= numbers_in(
                    line.get(names.info_number), line.get(names.info_presentation), self.region
                )
        return found

    def client_name(self, partner: dict[str, Any]) -> str:
        for key in (self.names.partner_full_name, "Description"):
            text = str(partner.get(key) or "").strip()
            if text:
                return text
        return f"1C {partner.get('Ref_Key')}"

    async def match(self, resolved: Resolved) -> Match:
        partner = resolved.partner
        contact = resolved.contact
        is_partner = resolved.partner_catalog == self.names.partners
        return Match(
            client_id=f"partner:{resolved.partner_ref}"
            if is_partner
            else f"counterparty:{resolved.partner_ref}",
            client_name=self.client_name(partner),
            kind="person" if partner.get(self.names.partner_kind) == "ЧастноеЛицо" else "company",
            contact_name=str(contact.get("Description") or "").strip() or None if contact else None,
            manager=await self.manager(partner.get(f"{self.names.partner_manager}_Key")),
            crm_url=object_link(
                self.names.partner_link_object,
                resolved.partner_ref,
                open_in=self.open_in,
                thin_client=self.thin_client,
                web_client=self.web_client,
            )
            if is_partner
            else None,
        )

    def user_of_extension(self, extension: str | None) -> str | None:
        """The 1C user an extension belongs to (``onec_users`` read backwards)."""
        if not extension:
            return None
        return next((ref for ref, ext in self.extensions.items() if ext == extension), None)

    async def manager(self, user_ref_value: Any) -> ResponsibleManager | None:
        user_ref = ref_of(user_ref_value)
        if user_ref is None:
            return None
        cached = self._managers.get(user_ref)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        attribute = self.names.user_extension
        try:
            user = await self.client.entity(
                self.names.users,
                user_ref,
                ["Ref_Key", "Description", *([attribute] if attribute else [])],
            )
        except OneCError as exc:
            if exc.retryable:
                raise
            # e.g. the OData user may not read users: the client still matters more.
            log.warning("1C refused to say who a user is", extra={"fields": {"status": exc.status}})
            user = None
        user = user or {}
        own = str(user.get(attribute) or "").strip() if attribute else ""
        manager = ResponsibleManager(
            name=str(user.get("Description") or "").strip() or "1C user",
            extension=self.extensions.get(user_ref) or own or None,
        )
        if len(self._managers) > 1000:
            self._managers.clear()
        self._managers[user_ref] = (self._clock() + USER_CACHE_SECONDS, manager)
        return manager

    def manager_ref(self, resolved: Resolved | None) -> str | None:
        if resolved is None:
            return None
        return ref_of(resolved.partner.get(f"{self.names.partner_manager}_Key"))
