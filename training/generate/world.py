"""The simulated population: users and their habits, accounts, merchants, devices and IPs.

Everything is built with vectorised numpy from one random stream; per-user habits live in
fixed-width arrays indexed by the user's position (``user_id - 1``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import reference as ref
from .config import GenerateConfig

DAY_US = 86_400 * 1_000_000
HOUR_US = 3_600 * 1_000_000
N_PREF = 10  # preferred merchants per user
N_BENEF = 3  # regular beneficiaries per user
#: Relative use of a user's preferred merchant slots (first slot = favourite).
PREF_SLOT_CUM = np.cumsum(1.0 / np.arange(1, N_PREF + 1)) / np.sum(1.0 / np.arange(1, N_PREF + 1))


class GroupSampler:
    """Draw items within a group (e.g. merchants within a country) in proportion to a weight.

    Each group's weights are normalised and laid end to end, offset by the group number, so
    ``searchsorted`` on one array answers any mix of groups in one call. Every group must hold at
    least one item.
    """

    def __init__(
        self, groups: np.ndarray, weights: np.ndarray, n_groups: int, items: np.ndarray | None = None
    ) -> None:
        order = np.lexsort((np.arange(len(groups)), groups))
        g = groups[order]
        counts = np.bincount(g, minlength=n_groups)
        if np.any(counts == 0):
            raise ValueError("every group needs at least one item")
        w = weights[order].astype(np.float64)
        totals = np.bincount(g, weights=w, minlength=n_groups)
        cum = np.cumsum(w / totals[g])
        ends = np.cumsum(counts) - 1
        base = np.concatenate(([0.0], cum[ends[:-1]]))  # cumulative total before each group
        self._cum = cum - base[g] + g
        self._cum[ends] = np.arange(n_groups) + 1.0  # exact group ends despite rounding
        self._items = order if items is None else items[order]
        self._last = ends

    def sample(self, group: np.ndarray, u: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self._cum, group + u, side="right")
        return self._items[np.minimum(pos, self._last[group])]


@dataclass
class World:
    """Population arrays (see the module docstring); ``*_id`` arrays hold database ids."""

    cfg: GenerateConfig
    # users (index u = user_id - 1)
    n_users: int
    u_country: np.ndarray
    u_lat: np.ndarray
    u_lon: np.ndarray
    u_segment: np.ndarray
    u_created: np.ndarray
    u_birth_days: np.ndarray
    u_scale: np.ndarray
    u_hour_shift: np.ndarray
    u_first_day: np.ndarray
    u_household: np.ndarray
    u_first_name: np.ndarray
    u_last_name: np.ndarray
    u_kyc_status: np.ndarray
    u_kyc_risk: np.ndarray
    # accounts
    acc_user: np.ndarray
    acc_kind: np.ndarray
    acc_opened: np.ndarray
    acc_status: np.ndarray
    u_checking: np.ndarray
    u_card: np.ndarray
    # merchants (index m; merchant_id = m_id[m])
    m_id: np.ndarray
    m_kind: np.ndarray  # 0 merchant, 1 beneficiary
    m_cat: np.ndarray
    m_country: np.ndarray
    m_lat: np.ndarray
    m_lon: np.ndarray
    m_created: np.ndarray
    m_pop: np.ndarray
    purchase_by_country: GroupSampler
    atm_by_country: GroupSampler
    benef_by_country: GroupSampler
    u_pref: np.ndarray
    u_atm: np.ndarray
    u_benef: np.ndarray
    u_n_benef: np.ndarray
    # devices (index d; device_id = d_id[d])
    d_id: np.ndarray
    d_os: np.ndarray
    d_first_seen: np.ndarray
    u_phone: np.ndarray
    u_laptop: np.ndarray
    u_shared: np.ndarray
    u_new_phone: np.ndarray
    u_upgrade_at: np.ndarray
    ring_devices: np.ndarray
    blacklisted_devices: np.ndarray
    # IP pool (index i)
    ip_int: np.ndarray
    ip_country: np.ndarray
    ip_lat: np.ndarray
    ip_lon: np.ndarray
    u_home_ip: np.ndarray
    u_mobile_ip: np.ndarray
    u_trip_ip: np.ndarray
    ring_ips_by_country: GroupSampler
    ring_ips: np.ndarray
    blacklisted_ips: np.ndarray
    # travel
    u_trip_start: np.ndarray
    u_trip_end: np.ndarray
    u_trip_country: np.ndarray
    # merchants on the blacklist (never chosen by honest habits)
    blacklisted_merchants: np.ndarray
    blacklisted_beneficiaries: np.ndarray


def _choice(rng: np.random.Generator, p: np.ndarray, size: int) -> np.ndarray:
    cum = np.cumsum(p) / np.sum(p)
    return np.minimum(np.searchsorted(cum, rng.random(size), side="right"), len(p) - 1)


def _other_country(rng: np.random.Generator, home: np.ndarray) -> np.ndarray:
    """A country different from ``home``, drawn in proportion to the population's countries."""
    c = _choice(rng, ref.COUNTRY_WEIGHT, len(home))
    same = c == home
    c[same] = _choice(rng, ref.COUNTRY_WEIGHT, int(same.sum()))
    same = c == home
    c[same] = (c[same] + 1) % len(ref.COUNTRIES)
    return c


def _city_in(rng: np.random.Generator, country: np.ndarray, cities: GroupSampler) -> np.ndarray:
    return cities.sample(country, rng.random(len(country)))


def build_world(cfg: GenerateConfig) -> World:
    """Build the whole population for ``cfg`` (deterministic in ``cfg.seed``)."""
    rng = np.random.default_rng([cfg.seed, 1])
    n_users = cfg.users
    start, end = cfg.start_us, cfg.end_us
    n_countries = len(ref.COUNTRIES)
    city_sampler = GroupSampler(ref.CITY_COUNTRY, np.ones(len(ref.CITIES)), n_countries)

    # --- households and users -------------------------------------------------------------
    hh_size = _choice(rng, np.array([0.55, 0.25, 0.12, 0.08]), n_users) + 1
    n_house = int(np.searchsorted(np.cumsum(hh_size), n_users)) + 1
    hh_size = hh_size[:n_house]
    household = np.repeat(np.arange(n_house), hh_size)[:n_users]
    hh_country = _choice(rng, ref.COUNTRY_WEIGHT, n_house)
    hh_city = _city_in(rng, hh_country, city_sampler)
    hh_lat = ref.CITIES[hh_city, 1] + rng.normal(0, 0.12, n_house)
    hh_lon = ref.CITIES[hh_city, 2] + rng.normal(0, 0.18, n_house)
    hh_last = rng.integers(0, len(ref.LAST_NAMES), n_house)
    u_country = hh_country[household]
    segment = _choice(rng, ref.SEGMENT_WEIGHT, n_users)
    # Account age: most customers joined years ago, a tenth joins during the window.
    age_days = np.minimum(rng.exponential(3 * 365, n_users), 15 * 365) + 1
    created = start - (age_days * DAY_US).astype(np.int64)
    joins_now = rng.random(n_users) < 0.10
    created[joins_now] = start + (rng.random(int(joins_now.sum())) * 0.8 * (end - start)).astype(np.int64)
    created -= created % 1_000_000  # whole seconds
    lo, hi = ref.SEGMENT_AGE[segment, 0], ref.SEGMENT_AGE[segment, 1]
    age_years = lo + rng.random(n_users) * (hi - lo)
    start_day = start // DAY_US
    birth_days = (start_day - age_years * 365.25).astype(np.int64)
    scale = ref.SEGMENT_SCALE[segment] * rng.lognormal(0.0, 0.6, n_users)
    hour_shift = np.clip(np.rint(rng.normal(0, 1.3, n_users)), -3, 3).astype(np.int64)
    first_day = np.maximum(0, -(-(created + DAY_US - start) // DAY_US))
    kyc_status = _choice(rng, np.array([0.05, 0.07, 0.88, 0.0]), n_users)
    kyc_risk = _choice(rng, np.array([0.0, 0.72, 0.22, 0.06]), n_users)
    kyc_risk[kyc_status == 0] = 0

    # --- accounts: checking for all, card for most, savings for some ------------------------
    has_card = rng.random(n_users) < 0.85
    has_savings = rng.random(n_users) < 0.35
    per_user = 1 + has_card + has_savings
    acc_user = np.repeat(np.arange(n_users), per_user)
    first_acc = np.concatenate(([0], np.cumsum(per_user)[:-1]))
    slot = np.arange(len(acc_user)) - first_acc[acc_user]
    # slot 0 checking, slot 1 card if the user has one else savings, slot 2 savings
    acc_kind = np.where(slot == 0, 0, np.where((slot == 1) & has_card[acc_user], 2, 1))
    u_checking = first_acc + 1
    u_card = np.where(has_card, first_acc + 2, u_checking)
    acc_opened = created[acc_user] + (rng.random(len(acc_user)) * HOUR_US).astype(np.int64)
    is_sav = acc_kind == 1
    room = np.maximum(end - created[acc_user], DAY_US)
    acc_opened[is_sav] = created[acc_user][is_sav] + (rng.random(int(is_sav.sum())) * room[is_sav]).astype(
        np.int64
    )
    acc_opened -= acc_opened % 1_000_000
    acc_status = np.zeros(len(acc_user), dtype=np.int64)
    acc_status[is_sav] = _choice(rng, np.array([0.96, 0.02, 0.02]), int(is_sav.sum()))

    # --- merchants and beneficiaries -------------------------------------------------------
    n_merch = max(60, n_users // 8)
    n_benef = max(40, n_users // 4)
    n_bl_merch = max(3, n_users // 1500)
    n_bl_benef = max(3, n_users // 1500)
    n_m = n_merch + n_benef + n_bl_merch + n_bl_benef
    m_kind = np.concatenate(
        [np.zeros(n_merch), np.ones(n_benef), np.zeros(n_bl_merch), np.ones(n_bl_benef)]
    ).astype(np.int64)
    m_country = _choice(rng, ref.COUNTRY_WEIGHT, n_m)
    m_country[: n_countries * 4] = np.tile(np.arange(n_countries), 4)  # no country left empty
    m_country[n_merch : n_merch + n_countries] = np.arange(n_countries)
    purchase_w = np.array([c[1] for c in ref.PURCHASE_CATEGORIES])
    m_cat = np.where(
        m_kind == 0,
        _choice(rng, np.append(purchase_w * 0.94, 0.06), n_m),
        ref.ATM_CATEGORY + 1 + _choice(rng, np.array([c[1] for c in ref.BENEFICIARY_CATEGORIES]), n_m),
    )
    m_cat[: n_countries * 2] = np.repeat([0, ref.ATM_CATEGORY], n_countries)  # a shop and an ATM each
    m_city = _city_in(rng, m_country, city_sampler)
    m_lat = ref.CITIES[m_city, 1] + rng.normal(0, 0.1, n_m)
    m_lon = ref.CITIES[m_city, 2] + rng.normal(0, 0.15, n_m)
    m_created = start - (rng.uniform(30, 3650, n_m) * DAY_US).astype(np.int64)
    m_created -= m_created % 1_000_000
    m_pop = rng.lognormal(0.0, 1.1, n_m)
    honest = np.arange(n_m) < n_merch + n_benef
    is_purchase = honest & (m_kind == 0) & (m_cat < ref.N_PURCHASE)
    is_atm = honest & (m_cat == ref.ATM_CATEGORY)
    is_benef = honest & (m_kind == 1)
    m_id = rng.permutation(n_m).astype(np.int64) + 1  # ids carry no hint of the merchant's role

    def sampler(mask: np.ndarray) -> GroupSampler:
        idx = np.flatnonzero(mask)
        return GroupSampler(m_country[idx], m_pop[idx], n_countries, items=idx)

    purchase_by_country = sampler(is_purchase)
    atm_by_country = sampler(is_atm)
    benef_by_country = sampler(is_benef)
    u_pref = purchase_by_country.sample(np.repeat(u_country, N_PREF), rng.random(n_users * N_PREF))
    u_pref = u_pref.reshape(n_users, N_PREF)
    u_atm = atm_by_country.sample(u_country, rng.random(n_users))
    u_benef = benef_by_country.sample(np.repeat(u_country, N_BENEF), rng.random(n_users * N_BENEF))
    u_benef = u_benef.reshape(n_users, N_BENEF)
    u_n_benef = rng.integers(1, N_BENEF + 1, n_users)
    bl_merch = np.arange(n_merch + n_benef, n_merch + n_benef + n_bl_merch)
    bl_benef = np.arange(n_merch + n_benef + n_bl_merch, n_m)
    m_cat[bl_merch] = _choice(rng, purchase_w, n_bl_merch)

    # --- devices ---------------------------------------------------------------------------
    has_laptop = rng.random(n_users) < 0.45
    hh_shared = (hh_size > 1) & (rng.random(n_house) < 0.7)
    upgrades = rng.random(n_users) < 0.08
    n_ring = max(8, cfg.fraud_transactions // 60)
    n_bl_dev = max(4, n_users // 1000)
    counts = [n_users, int(has_laptop.sum()), int(hh_shared.sum()), int(upgrades.sum()), n_ring, n_bl_dev]
    offs = np.concatenate(([0], np.cumsum(counts)))
    n_dev = int(offs[-1])
    u_phone = np.arange(n_users)
    u_laptop = np.full(n_users, -1)
    u_laptop[has_laptop] = offs[1] + np.arange(counts[1])
    hh_dev = np.full(n_house, -1)
    hh_dev[hh_shared] = offs[2] + np.arange(counts[2])
    u_shared = hh_dev[household]
    u_new_phone = np.full(n_users, -1)
    u_new_phone[upgrades] = offs[3] + np.arange(counts[3])
    ring_devices = offs[4] + np.arange(n_ring)
    bl_devices = offs[5] + np.arange(n_bl_dev)
    d_os = np.empty(n_dev, dtype=np.int64)
    d_os[: offs[1]] = _choice(rng, ref.PHONE_OS, counts[0])
    d_os[offs[1] : offs[2]] = _choice(rng, ref.COMPUTER_OS, counts[1])
    d_os[offs[2] : offs[3]] = _choice(rng, ref.SHARED_OS, counts[2])
    d_os[offs[3] :] = _choice(rng, ref.PHONE_OS * 0.8 + ref.COMPUTER_OS * 0.2, n_dev - int(offs[3]))
    d_first = np.empty(n_dev, dtype=np.int64)
    # A device is first seen after its owner joined, typically within the last couple of years.
    recent = start - (rng.uniform(1, 700, n_dev) * DAY_US).astype(np.int64)
    d_first[: offs[1]] = np.maximum(created, recent[: offs[1]])
    d_first[offs[1] : offs[2]] = np.maximum(created[has_laptop], recent[offs[1] : offs[2]])
    hh_created = np.full(n_house, np.iinfo(np.int64).max)
    np.minimum.at(hh_created, household, created)
    d_first[offs[2] : offs[3]] = np.maximum(hh_created[hh_shared], recent[offs[2] : offs[3]])
    upgrade_at = np.full(n_users, np.iinfo(np.int64).max)
    lower = np.maximum(start, created + DAY_US)
    upgrade_at[upgrades] = lower[upgrades] + (
        rng.random(counts[3]) * np.maximum(end - lower[upgrades], HOUR_US)
    ).astype(np.int64)
    d_first[offs[3] : offs[4]] = upgrade_at[upgrades]
    d_first[offs[4] :] = recent[offs[4] :]  # ring devices: overwritten by first use in the plan
    d_first -= d_first % 1_000_000
    d_id = rng.permutation(n_dev).astype(np.int64) + 1

    # --- travel ----------------------------------------------------------------------------
    travels = rng.random(n_users) < ref.SEGMENT_TRAVEL[segment]
    trip_len = (rng.uniform(2, 12, n_users) * DAY_US).astype(np.int64)
    t_lo = np.maximum(start, created + DAY_US)
    trip_start = t_lo + (rng.random(n_users) * np.maximum(end - t_lo - trip_len, 0)).astype(np.int64)
    trip_start[~travels] = 0
    trip_end = np.where(travels, trip_start + trip_len, 0)
    trip_country = _other_country(rng, u_country)
    trip_city = _city_in(rng, trip_country, city_sampler)

    # --- IP pool ---------------------------------------------------------------------------
    n_carrier = max(n_countries * 3, n_users // 40)
    carrier_country = _choice(rng, ref.COUNTRY_WEIGHT, n_carrier)
    carrier_country[:n_countries] = np.arange(n_countries)
    n_trip = int(travels.sum())
    n_ring_ip = max(n_countries * 2, n_ring * 2)
    n_bl_ip = max(4, n_users // 1000)
    ring_ip_country = _choice(rng, ref.COUNTRY_WEIGHT, n_ring_ip)
    ring_ip_country[:n_countries] = np.arange(n_countries)
    bl_ip_country = _choice(rng, ref.COUNTRY_WEIGHT, n_bl_ip)
    ip_country = np.concatenate(
        [hh_country, carrier_country, trip_country[travels], ring_ip_country, bl_ip_country]
    )
    ip_offs = np.concatenate(([0], np.cumsum([n_house, n_carrier, n_trip, n_ring_ip, n_bl_ip])))
    n_ip = int(ip_offs[-1])
    ip_city = _city_in(rng, ip_country, city_sampler)
    ip_city[ip_offs[2] : ip_offs[3]] = trip_city[travels]
    ip_lat = ref.CITIES[ip_city, 1] + rng.normal(0, 0.1, n_ip)
    ip_lon = ref.CITIES[ip_city, 2] + rng.normal(0, 0.15, n_ip)
    ip_lat[:n_house], ip_lon[:n_house] = hh_lat, hh_lon
    # A bijection of the pool index onto public-looking IPv4 space 11.0.0.0-222.255.255.255,
    # so every pool entry gets a distinct address.
    span = 212 * 2**24
    ip_int = (np.arange(n_ip, dtype=np.int64) * 2_654_435_761 + rng.integers(0, span)) % span + 11 * 2**24
    u_home_ip = household.copy()
    carrier = GroupSampler(carrier_country, np.ones(n_carrier), n_countries)
    u_mobile_ip = ip_offs[1] + carrier.sample(u_country, rng.random(n_users))
    u_trip_ip = np.full(n_users, -1)
    u_trip_ip[travels] = ip_offs[2] + np.arange(n_trip)
    ring_ips = ip_offs[3] + np.arange(n_ring_ip)
    ring_by_country = GroupSampler(ring_ip_country, np.ones(n_ring_ip), n_countries, items=ring_ips)
    bl_ips = ip_offs[4] + np.arange(n_bl_ip)

    return World(
        cfg=cfg,
        n_users=n_users,
        u_country=u_country,
        u_lat=hh_lat[household],
        u_lon=hh_lon[household],
        u_segment=segment,
        u_created=created,
        u_birth_days=birth_days,
        u_scale=scale,
        u_hour_shift=hour_shift,
        u_first_day=first_day,
        u_household=household,
        u_first_name=rng.integers(0, len(ref.FIRST_NAMES), n_users),
        u_last_name=hh_last[household],
        u_kyc_status=kyc_status,
        u_kyc_risk=kyc_risk,
        acc_user=acc_user,
        acc_kind=acc_kind,
        acc_opened=acc_opened,
        acc_status=acc_status,
        u_checking=u_checking,
        u_card=u_card,
        m_id=m_id,
        m_kind=m_kind,
        m_cat=m_cat,
        m_country=m_country,
        m_lat=m_lat,
        m_lon=m_lon,
        m_created=m_created,
        m_pop=m_pop,
        purchase_by_country=purchase_by_country,
        atm_by_country=atm_by_country,
        benef_by_country=benef_by_country,
        u_pref=u_pref,
        u_atm=u_atm,
        u_benef=u_benef,
        u_n_benef=u_n_benef,
        d_id=d_id,
        d_os=d_os,
        d_first_seen=d_first,
        u_phone=u_phone,
        u_laptop=u_laptop,
        u_shared=u_shared,
        u_new_phone=u_new_phone,
        u_upgrade_at=upgrade_at,
        ring_devices=ring_devices,
        blacklisted_devices=bl_devices,
        ip_int=ip_int,
        ip_country=ip_country,
        ip_lat=ip_lat,
        ip_lon=ip_lon,
        u_home_ip=u_home_ip,
        u_mobile_ip=u_mobile_ip,
        u_trip_ip=u_trip_ip,
        ring_ips_by_country=ring_by_country,
        ring_ips=ring_ips,
        blacklisted_ips=bl_ips,
        u_trip_start=trip_start,
        u_trip_end=trip_end,
        u_trip_country=trip_country,
        blacklisted_merchants=bl_merch,
        blacklisted_beneficiaries=bl_benef,
    )
