"""The 1C connector at the size of a large base: 100,000 partners in the OData stand-in
(crm_bridge/onec/standin.py), each with one or two phones written as people write them,
and 20,000 contact persons. In one run it measures:

- the full index load, against a baseline of fetching the same pages and decoding their
  JSON with nothing else done (what any client of this OData interface must do);
- a refresh after 100 partners were edited, against the full load;
- a lookup: the local index hit alone, then the whole lookup (hit, live confirmation of
  the partner with its contact information, its manager), against a bare GET of the
  same partner (the least one confirmation costs);
- the index's memory.

The stand-in serves from the same process and the same core, so absolute times include
its work; the ratios compare like with like. Usage: python bench/onec_index.py
[--partners N] [--lookups N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import time
import tracemalloc

from crm_bridge.onec.directory import OneCDirectory
from crm_bridge.onec.odata import ODataClient
from crm_bridge.onec.phone_index import Owner, PhoneIndex
from crm_bridge.onec.standin import OneCStandIn

PARTNERS = "Catalog_Партнеры"


def fill(standin: OneCStandIn, partners: int, rng: random.Random) -> list[tuple[str, str]]:
    """The base; returns (number, partner ref) pairs to look up."""
    managers = [standin.add_user(f"Менеджер {n}") for n in range(50)]
    numbers: list[tuple[str, str]] = []
    for n in range(partners):
        city = f"+7 (812) {n // 10000:03d}-{n % 10000 // 100:02d}-{n % 100:02d}"
        mobile = f"8 921 {n // 10000:03d}-{n % 10000 // 100:02d}-{n % 100:02d}"
        written = f"{city}, доб. {n % 90 + 10}" + (f"; {mobile} (моб.)" if n % 3 == 0 else "")
        ref = standin.add_partner(
            f"Клиент {n}",
            [("" if n % 2 else city, written)],  # НомерТелефона often empty
            full_name=f"ООО «Клиент {n}»",
            manager=rng.choice(managers) if n % 10 else None,
        )
        numbers.append((f"+7812{n // 10000:03d}{n % 10000:04d}", ref))
        if n % 5 == 0:
            standin.add_contact(ref, f"Контакт {n}", [("", f"+7 495 {n:07d}"[:16])])
    return numbers


def index_memory(index: PhoneIndex) -> int:
    """Bytes a copy of the index takes (traced apart: tracemalloc slows what it traces)."""
    versions = {kind: index.known(kind) for kind in ("partner", "contact", "counterparty")}
    owners = [(o, versions[o.kind][o.ref], index.numbers_of(o)) for o in index.all_owners()]
    gc.collect()
    tracemalloc.start()
    copy = PhoneIndex()
    for owner, version, numbers in owners:
        copy.put(Owner(owner.kind, owner.ref), version, numbers)
    memory = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return memory


async def bare_pages(client: ODataClient, directory: OneCDirectory) -> float:
    """Fetch every page the full load fetches, decode it, keep nothing."""
    names = directory.names
    started = time.perf_counter()
    for catalog in (names.partners, names.contacts, names.counterparties):
        async for _ in client.pages(catalog, select=["Ref_Key", "DataVersion", "DeletionMark"]):
            pass
        async for _ in client.pages(
            names.section(catalog),
            filter=f"{names.info_type} eq '{names.info_type_phone}'",
            select=["Ref_Key", names.info_number, names.info_presentation],
            orderby="Ref_Key,LineNumber",
        ):
            pass
    return time.perf_counter() - started


async def main(partners: int, lookups: int) -> None:
    rng = random.Random(18)
    standin = OneCStandIn()
    url = await standin.start()
    started = time.perf_counter()
    numbers = fill(standin, partners, rng)
    print(f"stand-in: {partners:,} partners filled in {time.perf_counter() - started:.1f} s")

    client = ODataClient(url, "Администратор", "пароль 1С", page_size=1000)
    directory = OneCDirectory(client)
    await directory.ensure_metadata()
    await bare_pages(client, directory)  # warm the stand-in's caches for both runs
    bare = await bare_pages(client, directory)

    gc.collect()
    started = time.perf_counter()
    await directory.refresh_now()
    full = time.perf_counter() - started
    memory = index_memory(directory.index)
    print(
        f"full load: {full:.2f} s for {directory.index.owners:,} owners, "
        f"{len(directory.index):,} numbers; bare page fetches {bare:.2f} s; "
        f"ratio full/bare {full / bare:.2f} (reading the written numbers is most of it: "
        f"{(full - bare) / max(len(directory.index), 1) * 1e6:.0f} µs a number); "
        f"index {memory / 2**20:.1f} MiB"
    )

    for _, ref in rng.sample(numbers, 100):
        rows = standin.phone_rows([("", "+7 (812) 999-00-00")])
        standin.edit(PARTNERS, ref, КонтактнаяИнформация=rows)
    started = time.perf_counter()
    await directory.refresh_now()
    incremental = time.perf_counter() - started
    print(
        f"refresh after 100 edits: {incremental:.2f} s; ratio refresh/full "
        f"{incremental / full:.2f} (a pass over the versions, then 5 section requests)"
    )

    sample = rng.sample(numbers, lookups)
    started = time.perf_counter()
    for number, _ in sample:
        directory.index.find(number)
    hit = (time.perf_counter() - started) / lookups
    started = time.perf_counter()
    for _, ref in sample:
        await client.entity(PARTNERS, ref)
    bare_get = (time.perf_counter() - started) / lookups
    directory._managers.clear()  # every manager asked once more, as after ten minutes
    started = time.perf_counter()
    found = 0
    for number, _ in sample:
        found += (await directory.lookup(number)) is not None
    lookup = (time.perf_counter() - started) / lookups
    print(
        f"lookup: index hit {hit * 1e6:.1f} µs; whole lookup {lookup * 1000:.2f} ms "
        f"({found}/{lookups} found); bare GET of the partner {bare_get * 1000:.2f} ms; "
        f"ratio lookup/bare GET {lookup / bare_get:.2f} (a partner hit asks twice: the "
        "partner, and its manager unless remembered)"
    )
    await directory.close()
    await standin.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partners", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=300)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.partners, arguments.lookups))
