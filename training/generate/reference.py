"""Static reference data of the simulated world: countries, cities, categories, segments, names.

Everything here is a constant table; the random population is built in :mod:`.world`.
"""

from __future__ import annotations

import numpy as np

COUNTRIES: tuple[str, ...] = ("GB", "DE", "FR", "ES", "IT", "NL", "IE", "PL", "SE", "US")
COUNTRY_WEIGHT = np.array([0.28, 0.14, 0.12, 0.08, 0.08, 0.06, 0.04, 0.06, 0.04, 0.10])
CURRENCIES: tuple[str, ...] = ("GBP", "EUR", "PLN", "SEK", "USD")
#: Account currency of a user, by home country index.
CURRENCY_OF_COUNTRY = np.array([0, 1, 1, 1, 1, 1, 1, 2, 3, 4], dtype=np.int32)

#: (country index, lat, lon) of the cities people live in and travel to.
CITIES = np.array(
    [
        (0, 51.51, -0.13), (0, 53.48, -2.24), (0, 52.49, -1.89), (0, 55.95, -3.19),
        (1, 52.52, 13.40), (1, 48.14, 11.58), (1, 50.11, 8.68), (1, 53.55, 9.99),
        (2, 48.86, 2.35), (2, 45.76, 4.84), (2, 43.30, 5.37),
        (3, 40.42, -3.70), (3, 41.39, 2.17),
        (4, 41.90, 12.50), (4, 45.46, 9.19),
        (5, 52.37, 4.90), (5, 51.92, 4.48),
        (6, 53.35, -6.26),
        (7, 52.23, 21.01), (7, 50.06, 19.94),
        (8, 59.33, 18.07),
        (9, 40.71, -74.01), (9, 34.05, -118.24), (9, 41.88, -87.63),
    ]
)  # fmt: skip
CITY_COUNTRY = CITIES[:, 0].astype(np.int64)

# Categories of whoever receives money. Purchase categories first, then ATM, then beneficiaries.
# (name, share of purchases, median amount at user scale 1, share paid online)
PURCHASE_CATEGORIES: tuple[tuple[str, float, float, float], ...] = (
    ("grocery", 0.25, 32.0, 0.08),
    ("restaurant", 0.16, 26.0, 0.05),
    ("fuel", 0.07, 50.0, 0.02),
    ("retail", 0.13, 55.0, 0.30),
    ("electronics", 0.04, 140.0, 0.50),
    ("travel", 0.03, 210.0, 0.70),
    ("digital_services", 0.10, 14.0, 0.95),
    ("utilities", 0.05, 80.0, 0.85),
    ("entertainment", 0.07, 28.0, 0.50),
    ("health", 0.06, 40.0, 0.15),
)
BENEFICIARY_CATEGORIES: tuple[tuple[str, float, float], ...] = (
    # (name, share of beneficiaries, median amount at user scale 1)
    ("p2p", 0.55, 70.0),
    ("rent", 0.15, 700.0),
    ("business_payment", 0.15, 300.0),
    ("investment", 0.15, 250.0),
)
N_PURCHASE = len(PURCHASE_CATEGORIES)
ATM_CATEGORY = N_PURCHASE
CATEGORIES: tuple[str, ...] = (
    *(c[0] for c in PURCHASE_CATEGORIES),
    "atm",
    *(c[0] for c in BENEFICIARY_CATEGORIES),
)
CATEGORY_SCALE = np.array(
    [c[2] for c in PURCHASE_CATEGORIES] + [60.0] + [c[2] for c in BENEFICIARY_CATEGORIES]
)
CATEGORY_ECOM = np.array([c[3] for c in PURCHASE_CATEGORIES] + [0.0] * (1 + len(BENEFICIARY_CATEGORIES)))

CHANNELS: tuple[str, ...] = ("pos", "ecommerce", "transfer", "atm")
POS, ECOM, TRANSFER, ATM = 0, 1, 2, 3

SEGMENTS: tuple[str, ...] = ("retail", "premium", "student", "senior", "business")
SEGMENT_WEIGHT = np.array([0.62, 0.10, 0.12, 0.10, 0.06])
SEGMENT_SCALE = np.array([1.0, 2.2, 0.55, 0.8, 2.6])  # spending level
SEGMENT_RATE = np.array([1.0, 1.3, 0.9, 0.6, 1.7])  # transactions per day, relative
SEGMENT_TRANSFER = np.array([0.12, 0.14, 0.10, 0.10, 0.28])
SEGMENT_ATM = np.array([0.05, 0.02, 0.06, 0.10, 0.02])
SEGMENT_TRAVEL = np.array([0.30, 0.60, 0.30, 0.25, 0.55])
SEGMENT_AGE = np.array([(24, 65), (30, 70), (18, 26), (65, 90), (25, 65)])
#: Weekday weights (Monday first) per segment: weekends busier for people, quieter for businesses.
SEGMENT_WEEKDAY = np.array(
    [
        [0.92, 0.94, 0.96, 1.0, 1.12, 1.18, 0.88],
        [0.95, 0.95, 1.0, 1.0, 1.10, 1.15, 0.85],
        [0.90, 0.92, 0.95, 1.02, 1.15, 1.20, 0.86],
        [1.05, 1.05, 1.05, 1.05, 1.05, 0.95, 0.80],
        [1.20, 1.20, 1.20, 1.20, 1.10, 0.45, 0.30],
    ]
)
#: Hour-of-day profile (UTC, at a user's home) before the user's personal shift.
HOUR_PROFILE = np.array(
    [0.6, 0.35, 0.2, 0.15, 0.15, 0.25, 0.6, 1.4, 2.6, 3.4, 3.8, 4.4,
     5.6, 5.2, 4.6, 4.4, 4.8, 5.6, 6.2, 6.0, 5.2, 4.0, 2.6, 1.4]
)  # fmt: skip

OSES: tuple[str, ...] = ("android", "ios", "windows", "macos", "linux")
PHONE_OS = np.array([0.55, 0.45, 0.0, 0.0, 0.0])
COMPUTER_OS = np.array([0.0, 0.0, 0.62, 0.30, 0.08])
SHARED_OS = np.array([0.35, 0.35, 0.2, 0.1, 0.0])

FIRST_NAMES: tuple[str, ...] = (
    "Olivia", "Noah", "Amelia", "Liam", "Isla", "Oliver", "Ava", "Elijah", "Mia", "James",
    "Sophia", "Lucas", "Emma", "Mateo", "Lea", "Jonas", "Chloe", "Louis", "Lucia", "Hugo",
    "Giulia", "Leonardo", "Julia", "Finn", "Zofia", "Jakub", "Elsa", "William", "Aoife", "Sean",
    "Maya", "Daniel", "Sara", "Adam", "Laura", "Marco", "Anna", "Pablo", "Nora", "Ethan",
)  # fmt: skip
LAST_NAMES: tuple[str, ...] = (
    "Smith", "Jones", "Taylor", "Brown", "Muller", "Schmidt", "Schneider", "Martin", "Bernard",
    "Dubois", "Garcia", "Fernandez", "Lopez", "Rossi", "Russo", "Ferrari", "de Jong", "Jansen",
    "Murphy", "Kelly", "Nowak", "Kowalski", "Andersson", "Johansson", "Johnson", "Williams",
    "Miller", "Davis", "Wilson", "Moore", "Costa", "Visser", "Weber", "Leroy", "Moreau",
)  # fmt: skip
MERCHANT_WORDS: tuple[str, ...] = (
    "Corner", "City", "Green", "Blue", "Prime", "Urban", "Royal", "North", "Star", "Golden",
    "Metro", "Harbour", "Park", "Central", "Bright", "Swift", "Oak", "River", "Nova", "Union",
)  # fmt: skip
