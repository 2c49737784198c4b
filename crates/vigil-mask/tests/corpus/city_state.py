#!/usr/bin/env python3
"""Generates the labelled corpus of cities and states next to numbers (standard library only).

    python3 crates/vigil-mask/tests/corpus/city_state.py > crates/vigil-mask/tests/corpus/city_state.jsonl

Five state codes are also USPS street-suffix abbreviations (CT Court, KY Key, MT Mount,
PR Prairie, WY Way), so `82501 Riverton WY` or `2 Head CT` is shaped like a street address.
This corpus measures that confusion from both sides, in the format of corpus.jsonl:

- negatives: a number (a count, a ZIP, a quantity) before a city and its state, in
  sentences and as column values; a ZIP that follows a state is labelled `zip`;
- positives: street addresses whose suffix is one of those five, written as a word, as the
  mixed-case abbreviation (`Ct`, `Wy`), in capitals within an all-capital address, with a
  unit or a city, state and ZIP after it, and in capitals within mixed-case text (`12 Maple
  CT`): after a word that announces an address (`lives at`), and without one, the form the
  detector reads as a number before a city and state (its misses are counted here).

The city names are real places; the streets and numbers are made up.
"""

import json
import random

SEED = 20261203
rng = random.Random(SEED)

CITIES = {
    "WY": ["Riverton", "Casper", "Cheyenne", "Laramie", "Gillette", "Sheridan", "Rock Springs", "Jackson"],
    "CT": ["Hartford", "New Haven", "Stamford", "Waterbury", "Norwalk", "Danbury", "Bristol"],
    "KY": ["Louisville", "Lexington", "Bowling Green", "Paris", "Frankfort", "Owensboro"],
    "MT": ["Billings", "Missoula", "Bozeman", "Butte", "Helena", "Great Falls"],
    "PR": ["San Juan", "Ponce", "Bayamon", "Carolina", "Caguas", "Mayaguez"],
}
# States whose codes are no street suffix: controls.
OTHER = {"MA": ["Boston", "Salem"], "TX": ["Austin", "Georgetown"], "OR": ["Fairview", "Salem"]}
SUFFIX = {"WY": ("Way", "Wy"), "CT": ("Court", "Ct"), "KY": ("Key", "Ky"), "MT": ("Mount", "Mt"), "PR": ("Prairie", "Pr")}
STREETS = ["Maple", "Oak", "Cedar", "Harbor", "Willow", "Eagle", "Juniper", "Sunset", "Pine", "Aspen"]

NEGATIVE = [
    "{n} patients from {city} {st} this week",
    "{zip} {city} {st}",
    "seen {n} {city} {st} residents in March",
    "{city} {st}: {n} visits",
    "transferred from {city}, {st} on day {n}",
    "{n} {city} {st}",
    "Lot {n} shipped to {city} {st}",
]
IMAGING = ["ordered {n} Head CT", "{n} Chest CT scans reviewed", "Abdomen CT x{n} today"]
POSITIVE = [
    ("{num} {street} {word}", "word"),
    ("lives at {num} {street} {abbr}", "abbr"),
    ("mail to {num} {street} {abbr}, {city}, {st} {zip}", "abbr"),
    ("Home address: {num} {STREET} {ST}", "caps"),
    ("{num} {street} {abbr} Apt {n}", "abbr"),
    ("lives at {num} {street} {st}", "mixed_caps"),
    ("{num} {street} {st}", "mixed_caps"),
    ("moved to {num} {street} {st} last week", "mixed_caps"),
]


def emit(text, spans, column=None):
    rec = {"text": text, "spans": spans}
    if column:
        rec["column"] = column
    print(json.dumps(rec, separators=(",", ":")))


def zipcode(st):
    first = {"WY": "82", "CT": "06", "KY": "40", "MT": "59", "PR": "00", "MA": "02", "TX": "78", "OR": "97"}[st]
    return first + f"{rng.randint(0, 999):03d}"


def main():
    states = list(CITIES)
    for i in range(140):
        st = states[i % len(states)]
        city = rng.choice(CITIES[st])
        t = NEGATIVE[i % len(NEGATIVE)]
        text = t.format(n=rng.randint(1, 400), city=city, st=st, zip=zipcode(st))
        emit(text, [])
    for i in range(30):
        emit(IMAGING[i % len(IMAGING)].format(n=rng.randint(1, 4)), [])
    for st, cities in OTHER.items():
        for city in cities:
            emit(f"{rng.randint(1, 400)} {city} {st}", [])
    # A ZIP after a city and state (labelled: the zip detector finds it).
    for i in range(20):
        st = states[i % len(states)]
        city = rng.choice(CITIES[st])
        z = zipcode(st)
        text = f"{city} {st} {z}"
        emit(text, [[len(text) - 5, len(text), "zip"]])
    # Column values: a city with its state, and a count column.
    for i in range(20):
        st = states[i % len(states)]
        emit(f"{rng.choice(CITIES[st])} {st}", [], "city_state")
        emit(f"{rng.randint(1, 90)} {rng.choice(CITIES[st])} {st}", [], "place")
    for i in range(160):
        st = states[i % len(states)]
        template, form = POSITIVE[i % len(POSITIVE)]
        word, abbr = SUFFIX[st]
        street = rng.choice(STREETS)
        values = dict(
            num=rng.randint(1, 9999),
            street=street,
            STREET=street.upper(),
            word=word,
            abbr=abbr,
            st=st,
            ST=st,
            city=rng.choice(CITIES[st]),
            zip=zipcode(st),
            n=rng.randint(1, 40),
        )
        text = template.format(**values)
        start = text.index(str(values["num"]))
        emit(text, [[start, len(text), "address"]])


if __name__ == "__main__":
    main()
