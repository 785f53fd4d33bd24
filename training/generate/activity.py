"""Honest activity: when customers transact and what a transaction of theirs looks like.

:func:`habit_rows` turns (user, time) pairs into full transaction rows following each user's
habits; the fraud scenarios reuse it so that fraud rows look like the victim's own rows in every
column the scenario does not change.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from . import reference as ref
from .world import DAY_US, HOUR_US, N_PREF, PREF_SLOT_CUM, World

LEGIT = -1  # fraud code of an honest row


@dataclass
class Rows:
    """Transaction rows as parallel arrays, with indices into the world's tables.

    ``merchant``/``device``/``ip`` are world indices (``-1`` = none); ``regular`` marks rows whose
    (device, IP) pair the user had already used before the window (for device_ip_history).
    """

    user: np.ndarray
    ts: np.ndarray
    account: np.ndarray
    merchant: np.ndarray
    channel: np.ndarray
    device: np.ndarray
    ip: np.ndarray
    amount: np.ndarray
    country: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    fraud: np.ndarray
    regular: np.ndarray

    def __len__(self) -> int:
        return len(self.user)

    def take(self, idx: np.ndarray) -> Rows:
        return Rows(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @staticmethod
    def concat(parts: list[Rows]) -> Rows:
        return Rows(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Rows)})


def day_cdf(world: World) -> np.ndarray:
    """Cumulative day-of-window distribution per segment: weekly pattern and paydays."""
    cfg = world.cfg
    days = np.arange(cfg.days)
    epoch_day = cfg.start_us // DAY_US + days
    weekday = (epoch_day + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    dom = (epoch_day - np.datetime64("1970-01-01", "D").astype(np.int64)).astype("datetime64[D]")
    day_of_month = (dom - dom.astype("datetime64[M]")).astype(np.int64) + 1
    payday = np.where(np.isin(day_of_month, (1, 25, 26, 27)), 1.15, 1.0)
    weights = ref.SEGMENT_WEEKDAY[:, weekday] * payday
    cdf = np.cumsum(weights, axis=1)
    return cdf / cdf[:, -1:]


HOUR_CDF = np.cumsum(ref.HOUR_PROFILE) / ref.HOUR_PROFILE.sum()


def habit_times(world: World, users: np.ndarray, cdf: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Event times (µs UTC) for ``users``: weekly/payday day pattern, personal hour profile."""
    seg = world.u_segment[users]
    first = world.u_first_day[users]
    # Inverse-CDF sampling restricted to the days after the user joined.
    base = np.where(first > 0, cdf[seg, np.maximum(first - 1, 0)], 0.0)
    target = base + rng.random(len(users)) * (1.0 - base)
    day = np.empty(len(users), dtype=np.int64)
    for s in range(cdf.shape[0]):
        mask = seg == s
        day[mask] = np.searchsorted(cdf[s], target[mask], "left")
    day = np.clip(day, first, world.cfg.days - 1)
    hour = (np.searchsorted(HOUR_CDF, rng.random(len(users)), "right") + world.u_hour_shift[users]) % 24
    within = rng.integers(0, HOUR_US, len(users))
    return world.cfg.start_us + day * DAY_US + hour * HOUR_US + within


def amounts(world: World, users: np.ndarray, cat: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Heavy-tailed amounts: category level x the user's spending level x noise (not rounded)."""
    noise = rng.lognormal(0.0, 0.55, len(users))
    return ref.CATEGORY_SCALE[cat] * world.u_scale[users] * noise


def finish_amounts(amount: np.ndarray, channel: np.ndarray) -> np.ndarray:
    """Clip to a sane range and round: ATM cash to tens, everything else to cents."""
    amount = np.clip(amount, 0.5, 95_000.0)
    cash = channel == ref.ATM
    amount[cash] = np.maximum(np.rint(amount[cash] / 10.0) * 10.0, 10.0)
    return np.rint(amount * 100.0) / 100.0


def account_for(world: World, users: np.ndarray, channel: np.ndarray) -> np.ndarray:
    """Card for purchases (checking when the user has no card), checking for transfers and cash."""
    return np.where(channel <= ref.ECOM, world.u_card[users], world.u_checking[users])


def habit_rows(world: World, users: np.ndarray, ts: np.ndarray, rng: np.random.Generator) -> Rows:
    """Rows the users would make at times ``ts`` following their habits (all honest)."""
    n = len(users)
    seg = world.u_segment[users]
    home = world.u_country[users]
    travelling = (ts >= world.u_trip_start[users]) & (ts < world.u_trip_end[users])
    away = world.u_trip_country[users]

    r = rng.random(n)
    p_transfer = ref.SEGMENT_TRANSFER[seg]
    is_transfer = r < p_transfer
    is_atm = ~is_transfer & (r < p_transfer + ref.SEGMENT_ATM[seg])
    is_buy = ~is_transfer & ~is_atm

    # purchases: mostly the user's favourite merchants, sometimes anywhere in the home country
    slot = np.minimum(np.searchsorted(PREF_SLOT_CUM, rng.random(n), "right"), N_PREF - 1)
    merchant = world.u_pref[users, slot]
    elsewhere = rng.random(n) < 0.25
    merchant = np.where(elsewhere, world.purchase_by_country.sample(home, rng.random(n)), merchant)
    cat = world.m_cat[merchant]
    channel = np.where(rng.random(n) < ref.CATEGORY_ECOM[cat], ref.ECOM, ref.POS)
    # in person while travelling: a shop of the visited country
    local = is_buy & travelling & (channel == ref.POS)
    merchant[local] = world.purchase_by_country.sample(away[local], rng.random(int(local.sum())))
    # cash
    merchant[is_atm] = world.u_atm[users[is_atm]]
    atm_away = is_atm & travelling
    merchant[atm_away] = world.atm_by_country.sample(away[atm_away], rng.random(int(atm_away.sum())))
    channel[is_atm] = ref.ATM
    # transfers: regular beneficiaries, sometimes a one-off payee
    b_slot = (rng.random(n) * world.u_n_benef[users]).astype(np.int64)
    benef = world.u_benef[users, b_slot]
    one_off = rng.random(n) < 0.12
    benef = np.where(one_off, world.benef_by_country.sample(home, rng.random(n)), benef)
    merchant[is_transfer] = benef[is_transfer]
    channel[is_transfer] = ref.TRANSFER
    cat = world.m_cat[merchant]

    # devices: none for cash and most card-present payments, otherwise phone/laptop/shared
    r = rng.random(n)
    phone = np.where(ts >= world.u_upgrade_at[users], world.u_new_phone[users], world.u_phone[users])
    laptop = np.where(world.u_laptop[users] >= 0, world.u_laptop[users], phone)
    shared = np.where(world.u_shared[users] >= 0, world.u_shared[users], phone)
    device = np.where(r < 0.65, phone, np.where(r < 0.9, laptop, shared))
    wallet = rng.random(n) < 0.35
    device[(channel == ref.ATM) | ((channel == ref.POS) & ~wallet)] = -1
    device[(channel == ref.POS) & wallet] = phone[(channel == ref.POS) & wallet]
    on_phone = (device == phone) & (rng.random(n) < 0.5)
    ip = np.where(on_phone, world.u_mobile_ip[users], world.u_home_ip[users])
    ip = np.where(travelling, world.u_trip_ip[users], ip)
    ip[device < 0] = -1
    regular = (device >= 0) & ~travelling & (device != world.u_new_phone[users])

    # where the payer is: the terminal for card-present and cash, otherwise home or the trip
    present = (channel == ref.POS) | (channel == ref.ATM)
    trip_ip = np.maximum(world.u_trip_ip[users], 0)
    lat = np.where(travelling, world.ip_lat[trip_ip], world.u_lat[users]) + rng.normal(0, 0.01, n)
    lon = np.where(travelling, world.ip_lon[trip_ip], world.u_lon[users]) + rng.normal(0, 0.01, n)
    country = np.where(travelling, away, home)
    lat = np.where(present, world.m_lat[merchant], lat)
    lon = np.where(present, world.m_lon[merchant], lon)
    country = np.where(present, world.m_country[merchant], country)

    amount = finish_amounts(amounts(world, users, cat, rng), channel)
    return Rows(
        user=users,
        ts=ts,
        account=account_for(world, users, channel),
        merchant=merchant,
        channel=channel,
        device=device,
        ip=ip,
        amount=amount,
        country=country,
        lat=lat,
        lon=lon,
        fraud=np.full(n, LEGIT, dtype=np.int64),
        regular=regular,
    )


def at_habit_hour(world: World, users: np.ndarray, ts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Move each time to a random hour of the same day drawn from the user's own hour profile."""
    start = world.cfg.start_us
    day = (ts - start) // DAY_US
    hour = (np.searchsorted(HOUR_CDF, rng.random(len(users)), "right") + world.u_hour_shift[users]) % 24
    return start + day * DAY_US + hour * HOUR_US + rng.integers(0, HOUR_US, len(users))


def mark_regular(world: World, rows: Rows) -> None:
    """Flag rows on a device the user had before the window, from their home or mobile IP."""
    u = rows.user
    d = rows.device
    known = (d == world.u_phone[u]) | (d == world.u_laptop[u]) | (d == world.u_shared[u])
    home_ip = (rows.ip == world.u_home_ip[u]) | (rows.ip == world.u_mobile_ip[u])
    rows.regular = (d >= 0) & known & home_ip
