#!/usr/bin/env python3
"""Generates the labelled synthetic PHI corpus the detector quality test reads.

    pip install faker
    python3 crates/vigil-mask/tests/corpus/generate.py > crates/vigil-mask/tests/corpus/corpus.jsonl

One JSON object per line: {"text": ..., "column": optional column name, "spans": [[start, end,
entity], ...]} with byte offsets (texts are ASCII). Values come from Faker (fixed seed) or are
built here with the identifiers' real rules (SSA areas, NANP, Luhn, NPI, DEA, MBI, VIN check
digits). Negative sentences carry numbers and capitalised words that are not PHI (doses, lab
values, codes, versions, drug and place names) so that precision is measured, not assumed.
"""

import json
import random
import sys

from faker import Faker

SEED = 20261128
fake = Faker("en_US")
Faker.seed(SEED)
rng = random.Random(SEED)


def luhn_digit(body):
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def ssn():
    while True:
        a = rng.randint(1, 899)
        if a != 666:
            break
    sep = rng.choice(["-", "-", "-", " "])
    return f"{a:03d}{sep}{rng.randint(1, 99):02d}{sep}{rng.randint(1, 9999):04d}"


def phone():
    area = f"{rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(0, 9)}"
    ex = f"{rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(0, 9)}"
    line = f"{rng.randint(0, 9999):04d}"
    return rng.choice([
        f"({area}) {ex}-{line}", f"{area}-{ex}-{line}", f"{area}.{ex}.{line}",
        f"+1 {area} {ex} {line}", f"1-{area}-{ex}-{line}", f"({area}){ex}-{line}",
    ])


def e164():
    return rng.choice(["+44 20 7946 0", "+49 30 901820", "+33 1 42 68 53", "+61 2 9374 4"]) + \
        "".join(str(rng.randint(0, 9)) for _ in range(2))


def date():
    d = fake.date_of_birth(minimum_age=1, maximum_age=95)
    fmt = rng.choice(["%Y-%m-%d", "%m/%d/%Y", "%B %-d, %Y", "%-d %b %Y", "%b %-d %Y", "%m-%d-%Y"])
    return d.strftime(fmt)


def npi():
    body = rng.choice("12") + "".join(str(rng.randint(0, 9)) for _ in range(8))
    return body + luhn_digit("80840" + body)


def dea():
    letters = rng.choice("ABFGM") + rng.choice("ABCDEFGHJKLMNPRSTW")
    d = [rng.randint(0, 9) for _ in range(6)]
    check = (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10
    return letters + "".join(map(str, d)) + str(check)


def card():
    prefix = rng.choice(["4", "51", "52", "37", "6011"])
    length = 15 if prefix == "37" else 16
    body = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - len(prefix) - 1))
    n = body + luhn_digit(body)
    if rng.random() < 0.5 and length == 16:
        return " ".join(n[i:i + 4] for i in range(0, 16, 4))
    return n


MBI_ALPHA = "ACDEFGHJKMNPQRTUVWXY"


def mbi():
    a = lambda: rng.choice(MBI_ALPHA)
    n = lambda: str(rng.randint(0, 9))
    an = lambda: rng.choice(MBI_ALPHA + "0123456789")
    s = str(rng.randint(1, 9)) + a() + an() + n() + a() + an() + n() + a() + a() + n() + n()
    return s if rng.random() < 0.6 else f"{s[:4]}-{s[4:7]}-{s[7:]}"


VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
VIN_VALUES = dict(zip("ABCDEFGHJKLMNPRSTUVWXYZ", [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 7, 9, 2, 3, 4, 5, 6, 7, 8, 9]))
VIN_WEIGHTS = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2]


def vin():
    s = [rng.choice(VIN_CHARS) for _ in range(17)]
    total = sum((int(c) if c.isdigit() else VIN_VALUES[c]) * w for c, w in zip(s, VIN_WEIGHTS))
    r = total % 11
    s[8] = "X" if r == 10 else str(r)
    return "".join(s)


def ipv4():
    return fake.ipv4_public()


def ipv6():
    return fake.ipv6()


def name():
    return rng.choice([
        f"{fake.first_name()} {fake.last_name()}",
        f"{fake.first_name()} {rng.choice('ABCDEFGHJKLMNPRSTW')}. {fake.last_name()}",
        f"{fake.last_name()}, {fake.first_name()}",
    ])


def address():
    a = fake.street_address()
    if rng.random() < 0.5:
        a += f", {fake.city()}, {fake.state_abbr(include_territories=False)} {fake.zipcode()}"
    return a


def ascii_only(s):
    return all(ord(c) < 128 for c in s)


# (template, entity) pairs: `{}` is the value.
POSITIVE = {
    "ssn": ["SSN {} on file", "social security number: {}", "Patient SSN is {}.", "ss# {}"],
    "phone": ["Call back at {}.", "phone {}", "Pt can be reached on {} after 5pm", "fax: {}"],
    "email": ["Email {} with results", "contact: {}", "sent portal invite to {}."],
    "date": ["DOB {}", "admitted on {}", "born {} per chart", "seen {} for follow-up"],
    "address": ["lives at {}", "Home address: {}.", "mail to {}"],
    "npi": ["Ordering provider NPI {}", "npi: {}", "referred by NPI {}."],
    "dea": ["prescriber DEA {}", "DEA# {}", "DEA number {} verified"],
    "credit_card": ["paid with card {}", "card number {} declined", "cc {} on file"],
    "mbi": ["Medicare MBI {}", "MBI: {}", "beneficiary id {}"],
    "vin": ["vehicle VIN {} involved in MVA", "VIN {}"],
    "ip": ["login from {}", "device at {} reported", "client ip {}"],
    "url": ["see {} for the portal", "uploaded to {}"],
    "person_name": ["Patient {} arrived", "spoke with {} about meds", "Dr. {} reviewed", "{} called the clinic"],
    "mrn": ["MRN {}", "medical record number {}", "chart {} updated"],
    "health_plan": ["Member ID {}", "policy number {} active", "subscriber id: {}"],
    "account": ["account number {}", "acct {} billed", "billing account {} closed"],
    "zip": ["{city}, {state} {}", "zip code {}"],
    "age": ["a {}-year-old woman", "aged {}", "{} yo male"],
}

GEN = {
    "ssn": ssn, "phone": lambda: phone() if rng.random() < 0.85 else e164(), "email": fake.email,
    "date": date, "address": address, "npi": npi, "dea": dea, "credit_card": card, "mbi": mbi,
    "vin": vin, "ip": lambda: ipv4() if rng.random() < 0.7 else ipv6(), "url": fake.url,
    "person_name": name, "mrn": lambda: rng.choice(["", "MRN", "A-"]) + str(rng.randint(10**6, 10**8)),
    "health_plan": lambda: rng.choice(["XYZ", "BCB", "H", ""]) + str(rng.randint(10**8, 10**11)),
    "account": lambda: str(rng.randint(10**7, 10**12)), "zip": fake.zipcode,
    "age": lambda: str(rng.randint(90, 104)),
}

NEGATIVE = [
    "Metformin 500 mg twice daily, HbA1c 7.2%",
    "BP 128/82, HR 74, SpO2 98% on room air",
    "ICD-10 E11.9 and I10 recorded",
    "Order 48213 shipped in 3 boxes",
    "Lisinopril 10 mg, follow up in 3 months",
    "version 2.14.3 deployed to the lab interface",
    "WBC 6.4, Hgb 13.1, Plt 245",
    "Room 412, bed B",
    "Take 2 tablets every 6 hours as needed",
    "May continue current plan; March visit rescheduled",
    "The patient is stable and will return next week",
    "Batch 2024 of the flu vaccine arrived",
    "Referral to Cardiology at Mercy General",
    "Invoice total 1523.75 USD",
    "Weight 82.5 kg, height 178 cm",
    "CPT 99213 billed for the visit",
    "Aspirin 81 mg daily; Warfarin held",
    "Temperature 37.8 C at 14:30",
    "A 45 year old man with chest pain",
    "Protocol step 3 of 12 complete",
    "Will Rose bring the forms on Monday",
    "Bill the Hunter account next month",
    "queue length 1024 at 10:11:12",
    "Dose 0.5 mL IM, lot A1234",
]

# Column values: the column name is the context.
COLUMNS = {
    "first_name": ("person_name", fake.first_name),
    "last_name": ("person_name", fake.last_name),
    "zip": ("zip", fake.zipcode),
    "mrn": ("mrn", lambda: str(rng.randint(10**6, 10**8))),
    "ssn": ("ssn", lambda: ssn().replace("-", "").replace(" ", "")),
    "phone": ("phone", lambda: "".join(c for c in phone() if c.isdigit())[-10:]),
    "age": ("age", lambda: str(rng.randint(90, 104))),
}
COLUMN_NEGATIVE = {
    "city": fake.city, "drug": lambda: rng.choice(["Metformin", "Lisinopril", "Aspirin"]),
    "quantity": lambda: str(rng.randint(1, 99999)), "age": lambda: str(rng.randint(1, 89)),
    "state": fake.state_abbr, "status": lambda: rng.choice(["active", "Discharged", "Pending"]),
}


def emit(text, spans, column=None):
    rec = {"text": text, "spans": spans}
    if column:
        rec["column"] = column
    print(json.dumps(rec, separators=(",", ":")))


def main():
    per_entity = int(sys.argv[1]) if len(sys.argv) > 1 else 120
    for entity, templates in POSITIVE.items():
        made = 0
        while made < per_entity:
            value = GEN[entity]()
            t = rng.choice(templates)
            if "{city}" in t:
                t = t.replace("{city}", fake.city()).replace("{state}", fake.state_abbr(include_territories=False))
            if not ascii_only(value) or not ascii_only(t):
                continue
            pre, post = t.split("{}")
            text = pre + value + post
            spans = [[len(pre), len(pre) + len(value), entity]]
            # Half the time, a second sentence with another entity or a negative.
            if rng.random() < 0.5:
                other = rng.choice(list(POSITIVE))
                if other not in ("zip",) and rng.random() < 0.5:
                    v2 = GEN[other]()
                    t2 = rng.choice([x for x in POSITIVE[other] if "{city}" not in x])
                    if ascii_only(v2):
                        p2, q2 = t2.split("{}")
                        start = len(text) + 2 + len(p2)
                        text = text + "; " + p2 + v2 + q2
                        spans.append([start, start + len(v2), other])
                else:
                    text = text + "; " + rng.choice(NEGATIVE)
            emit(text, spans)
            made += 1
    for _ in range(per_entity * 3):
        emit(rng.choice(NEGATIVE), [])
    for column, (entity, gen) in COLUMNS.items():
        for _ in range(per_entity // 2):
            v = gen()
            if ascii_only(v):
                emit(v, [[0, len(v), entity]], column)
    for column, gen in COLUMN_NEGATIVE.items():
        for _ in range(per_entity // 3):
            v = gen()
            if ascii_only(v):
                emit(v, [], column)


if __name__ == "__main__":
    main()
