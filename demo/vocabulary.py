"""The demo store's vocabulary: company words, people's names (Hangul and romanized), time zones
and contact roles, with the weights `demo.data` draws them by."""

from __future__ import annotations

from itertools import accumulate, product

KO_COMPANY_WORDS = (
    "Hanbit", "Sejong", "Mirae", "Daehan", "Saebyeok", "Hana", "Jeil", "Gaon", "Nuri", "Arum",
    "Taeyang", "Hanul", "Boram", "Dasom", "Seorin", "Baekdu", "Halla", "Namsan", "Chorok",
    "Pureun",
)  # fmt: skip
EN_COMPANY_WORDS = (
    "Northwind", "Bluestone", "Silverline", "Evergreen", "Brightpath", "Redwood", "Ironclad",
    "Summit", "Keystone", "Lighthouse", "Harbor", "Pinecrest", "Starlight", "Cobalt", "Granite",
    "Maple", "Orchid", "Atlas", "Meridian", "Polaris", "Crescent", "Vanguard", "Horizon",
    "Juniper", "Aurora", "Quantum", "Sterling", "Copperfield", "Riverbend", "Foxglove",
)  # fmt: skip
# The second word of a company name decides its industry trait, so the two agree.
COMPANY_KINDS = (
    ("Logistics", "logistics"), ("Analytics", "software"), ("Health", "healthcare"),
    ("Robotics", "manufacturing"), ("Systems", "software"), ("Foods", "consumer_goods"),
    ("Labs", "software"), ("Bio", "healthcare"), ("Capital", "financial_services"),
    ("Media", "media"), ("Retail", "retail"), ("Energy", "energy"), ("Software", "software"),
    ("Networks", "telecom"), ("Mobility", "automotive"), ("Pharma", "healthcare"),
    ("Security", "software"), ("Education", "education"), ("Games", "media"),
    ("Travel", "travel"), ("Insurance", "financial_services"), ("Motors", "automotive"),
    ("Telecom", "telecom"), ("Cloud", "software"),
)  # fmt: skip
COMPANY_ENDINGS = ("", "", "", "", " Inc.", " Co.", " Group")

# (display, ascii) pairs: Korean names are shown in Hangul but emails need a romanization.
KO_FAMILY = (
    ("김", "kim"), ("이", "lee"), ("박", "park"), ("최", "choi"), ("정", "jung"), ("강", "kang"),
    ("조", "cho"), ("윤", "yoon"), ("장", "jang"), ("임", "lim"), ("한", "han"), ("오", "oh"),
    ("서", "seo"), ("신", "shin"), ("권", "kwon"),
)  # fmt: skip
KO_GIVEN = (
    ("민준", "minjun"), ("서연", "seoyeon"), ("지호", "jiho"), ("하은", "haeun"),
    ("도윤", "doyun"), ("서준", "seojun"), ("지우", "jiwoo"), ("수아", "sua"),
    ("예준", "yejun"), ("지민", "jimin"), ("현우", "hyunwoo"), ("유진", "yujin"),
    ("은우", "eunwoo"), ("서윤", "seoyun"), ("시우", "siwoo"), ("채원", "chaewon"),
    ("준호", "junho"), ("다은", "daeun"), ("건우", "gunwoo"), ("수빈", "subin"),
)  # fmt: skip
EN_GIVEN = (
    "James", "Olivia", "Liam", "Emma", "Noah", "Ava", "Ethan", "Sophia", "Lucas", "Mia",
    "Mason", "Isabella", "Logan", "Amelia", "Elijah", "Harper", "Oliver", "Charlotte", "Aiden",
    "Grace", "Daniel", "Chloe", "Henry", "Zoe",
)  # fmt: skip
EN_FAMILY = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Wilson",
    "Anderson", "Taylor", "Thomas", "Moore", "Martin", "Clark", "Lewis", "Walker", "Hall",
    "Young", "King", "Wright", "Scott", "Green", "Baker",
)  # fmt: skip

# (display name, ascii given, ascii family), precomputed so a contact costs one index draw.
PersonName = tuple[str, str, str]
KO_NAMES: tuple[PersonName, ...] = tuple(
    (f"{family}{given}", given_ascii, family_ascii)
    for (family, family_ascii), (given, given_ascii) in product(KO_FAMILY, KO_GIVEN)
)
EN_NAMES: tuple[PersonName, ...] = tuple(
    (f"{given} {family}", given.lower(), family.lower()) for given, family in product(EN_GIVEN, EN_FAMILY)
)

TIMEZONES = (
    "Asia/Seoul",
    "America/New_York",
    "America/Los_Angeles",
    "America/Chicago",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Paris",
)
TIMEZONE_CUM = tuple(accumulate((35, 18, 12, 8, 10, 9, 8)))
REGIONS = {"Asia": "apac", "America": "north_america", "Europe": "emea"}

EXTRA_ROLES = ("champion", "user", "exec_sponsor", "billing", "admin")
EXTRA_ROLE_CUM = tuple(accumulate((25, 45, 10, 12, 8)))
# 1-5 contacts, mean 3.
CONTACT_COUNT_CUM = tuple(accumulate((10, 20, 40, 20, 10)))
