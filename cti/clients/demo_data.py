"""A realistic demo directory: a few hundred clients in Russian, Georgian, Khmer and
English, with contacts, numbers in several countries and managers 101-103."""

from __future__ import annotations

import random

from cti.clients.builtin import ClientIn, ContactIn, PhoneIn
from cti.phone import to_e164

MANAGERS = ["101", "102", "103"]

_RU_WORDS = [
    "Ромашка",
    "Северный ветер",
    "Балтика",
    "Невский проспект",
    "Уральские самоцветы",
    "Сибирь-Транс",
    "Волга",
    "Петроградская",
    "Кронштадт",
    "Светлана",
    "Гранит",
    "Ладога",
    "Онега",
    "Альтаир",
    "Меридиан",
    "Континент",
    "Парус",
    "Нева-Принт",
]
_RU_FORMS = ["ООО «{}»", "АО «{}»", "ИП «{}»", "ТД «{}»"]
_RU_PEOPLE = [
    "Сергей Волков",
    "Мария Сидорова",
    "Иван Петров",
    "Ольга Кузнецова",
    "Дмитрий Соколов",
    "Елена Попова",
    "Алексей Лебедев",
    "Наталья Козлова",
    "Андрей Новиков",
    "Татьяна Морозова",
    "Павел Орлов",
    "Юлия Васильева",
]
_GE_WORDS = [
    "მზიური",
    "ნიკორა",
    "თბილისი",
    "კავკასია",
    "ალაზანი",
    "ბათუმი",
    "მთაწმინდა",
    "ქართლი",
    "რიყე",
    "ვარძია",
]
_GE_PEOPLE = [
    "ნინო კაპანაძე",
    "გიორგი ბერიძე",
    "ლევან მამალაძე",
    "თამარ ჯავახიშვილი",
    "დავით ლომიძე",
    "ანა გელაშვილი",
]
_KH_WORDS = ["អង្គរ", "មេគង្គ", "ភ្នំពេញ", "សៀមរាប", "កំពត"]
_KH_PEOPLE = ["សុខ ដារ៉ា", "ចាន់ សុភា", "ហេង វណ្ណា"]
_EN_WORDS = [
    "Acme",
    "Northwind",
    "Blue Harbour",
    "Greenfield",
    "Silverline",
    "Oakridge",
    "Redwood",
    "Summit",
    "Brightwater",
    "Kingsway",
]
_EN_FORMS = ["{} Ltd", "{} Trading", "{} Group", "{} & Sons"]
_EN_PEOPLE = ["Jane Smith", "John Brown", "Emily Clark", "Oliver Wright", "Sophie Turner"]


def demo_clients(
    count: int = 300, seed: int = 42, first: list[tuple[str, ClientIn]] = ()
) -> list[ClientIn]:
    """``first`` (numbers the demo PBX calls from, with their clients) and then generated
    clients up to ``count``; the same every run."""
    rng = random.Random(seed)  # noqa: S311 (made-up demo data, not security)
    clients = [client for _, client in first]
    used = {phone.number for client in clients for phone in client.phones}
    while len(clients) < count:
        kind = rng.choices(["ru", "ge", "kh", "en"], weights=[6, 2, 1, 2])[0]
        if kind == "ru":
            name = rng.choice(_RU_FORMS).format(rng.choice(_RU_WORDS))
            person, number = rng.choice(_RU_PEOPLE), f"+7{rng.choice(['812', '495', '921'])}"
            number += f"{rng.randrange(10**7):07d}"
            tags = rng.sample(["опт", "розница", "VIP", "новый"], k=rng.randint(0, 2))
        elif kind == "ge":
            name = f"შპს „{rng.choice(_GE_WORDS)}“"
            person, number = rng.choice(_GE_PEOPLE), f"+99532{rng.randrange(10**7):07d}"
            tags = rng.sample(["VIP", "ექსპორტი"], k=rng.randint(0, 1))
        elif kind == "kh":
            name = f"ក្រុមហ៊ុន {rng.choice(_KH_WORDS)}"
            person, number = rng.choice(_KH_PEOPLE), f"+85523{rng.randrange(10**6):06d}"
            tags = []
        else:
            name = rng.choice(_EN_FORMS).format(rng.choice(_EN_WORDS))
            person, number = rng.choice(_EN_PEOPLE), f"+44207{rng.randrange(10**7):07d}"
            tags = rng.sample(["VIP", "export"], k=rng.randint(0, 1))
        if number in used or to_e164(number, "RU") is None:  # not every random number is real
            continue
        used.add(number)
        clients.append(
            ClientIn(
                name=f"{name} #{len(clients) + 1}" if rng.random() < 0.5 else name,
                manager_extension=rng.choice(MANAGERS),
                tags=tags,
                phones=[PhoneIn(number, "office")],
                contacts=[ContactIn(person, rng.choice(["директор", "менеджер", "buyer", ""]))],
            )
        )
    return clients
