"""Fraud scenarios: a global plan of episodes, expanded into rows block by block.

Each scenario starts from the victim's own habitual row (:func:`.activity.habit_rows`) and changes
only what the attack changes, so no single column gives it away; the tell is behaviour over time:

- ``high_velocity``: card testing, a burst of 8-30 payments within minutes from a fraud-ring device.
- ``amount_spike``: one or two payments at the user's usual kind of merchant for 6-15x their usual
  amount.
- ``account_takeover``: a device and IP the user never used, in another country, then a few
  transfers and purchases within hours (draining).
- ``structuring``: a few customers repeatedly move amounts just under the reporting threshold.
- ``blacklisted``: a device, IP, merchant or beneficiary already on the blacklist.
- ``compromised_merchant``: customers who paid at a breached merchant during the breach are
  defrauded days later elsewhere, with their card details.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import reference as ref
from .activity import LEGIT, Rows, account_for, amounts, at_habit_hour, finish_amounts, habit_rows
from .config import FRAUD_TYPES
from .world import DAY_US, HOUR_US, World, _choice, _other_country

VELOCITY, SPIKE, TAKEOVER, STRUCTURING, BLACKLISTED, COMPROMISED = range(len(FRAUD_TYPES))
MINUTE_US = 60 * 1_000_000
BL_DEVICE, BL_IP, BL_MERCHANT, BL_BENEFICIARY = range(4)
AddEpisodes = Callable[[int, np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray]]


@dataclass
class FraudPlan:
    """Episodes (one attack on one user) and the side facts they need."""

    ep_type: np.ndarray
    ep_user: np.ndarray
    ep_t0: np.ndarray
    ep_size: np.ndarray
    ep_ring_device: np.ndarray
    ep_ring_ip: np.ndarray
    ep_bl_kind: np.ndarray
    ep_bl_entity: np.ndarray
    # compromised merchant: the honest visit during the breach that exposed the card
    visit_user: np.ndarray
    visit_ts: np.ndarray
    visit_merchant: np.ndarray
    compromised_merchants: np.ndarray
    # blacklist table rows: kind code, world index, added_at, expires_at (-1 = never)
    bl_kind: np.ndarray
    bl_entity: np.ndarray
    bl_added: np.ndarray
    bl_expires: np.ndarray


def _sizes(rng: np.random.Generator, total: int, low: int, extra: float, cap: int) -> np.ndarray:
    """Episode sizes ``low + Poisson(extra)`` (<= cap) that add up to exactly ``total`` rows."""
    if total <= 0:
        return np.zeros(0, dtype=np.int64)
    n = int(total / (low + extra)) + 8
    while True:
        sizes = np.minimum(low + rng.poisson(extra, n), cap)
        cum = np.cumsum(sizes)
        if cum[-1] >= total:
            break
        n *= 2
    k = int(np.searchsorted(cum, total)) + 1
    sizes = sizes[:k].copy()
    sizes[-1] -= int(cum[k - 1]) - total
    return sizes.astype(np.int64)


def _start_times(
    world: World, rng: np.random.Generator, users: np.ndarray, span_us: int, latest_us: int | None = None
) -> np.ndarray:
    """First-row times: after the user joined, early enough for the episode to fit, habit hour."""
    cfg = world.cfg
    lower = np.maximum(cfg.start_us, world.u_created[users] + DAY_US) + HOUR_US
    upper = np.maximum(lower, (latest_us if latest_us is not None else cfg.end_us) - span_us)
    t = lower + (rng.random(len(users)) * (upper - lower)).astype(np.int64)
    t = at_habit_hour(world, users, t, rng)
    return np.where(t < lower, t + DAY_US, t)


def _victims(world: World, rng: np.random.Generator, n: int, span_us: int, weight: np.ndarray) -> np.ndarray:
    cfg = world.cfg
    ok = world.u_created + 2 * DAY_US < cfg.end_us - span_us
    w = np.where(ok, weight, 0.0) if ok.any() else weight
    return _choice(rng, w, n)


def plan_fraud(world: World, counts: dict[str, int]) -> FraudPlan:
    """Plan every episode for the whole dataset (deterministic in the seed)."""
    cfg = world.cfg
    rng = np.random.default_rng([cfg.seed, 3])
    n_users = world.n_users
    days_us = cfg.days * DAY_US
    uniform = np.ones(n_users)
    parts: list[dict[str, np.ndarray]] = []

    def add(kind: int, users: np.ndarray, t0: np.ndarray, sizes: np.ndarray) -> dict[str, np.ndarray]:
        n = len(users)
        part = {
            "type": np.full(n, kind, dtype=np.int64),
            "user": users,
            "t0": t0,
            "size": sizes,
            "ring_device": world.ring_devices[rng.integers(0, len(world.ring_devices), n)],
            "ring_ip": world.ring_ips_by_country.sample(_choice(rng, ref.COUNTRY_WEIGHT, n), rng.random(n)),
            "bl_kind": np.full(n, -1, dtype=np.int64),
            "bl_entity": np.full(n, -1, dtype=np.int64),
        }
        parts.append(part)
        return part

    # card testing: bursts within minutes
    sizes = _sizes(rng, counts["high_velocity"], 8, 7.0, 30)
    users = _victims(world, rng, len(sizes), 2 * HOUR_US, uniform)
    add(VELOCITY, users, _start_times(world, rng, users, 2 * HOUR_US), sizes)

    # amount spikes: fraudsters prefer accounts where a large payment does not stand out globally
    sizes = _sizes(rng, counts["amount_spike"], 1, 0.3, 2)
    users = _victims(world, rng, len(sizes), DAY_US, 1.0 / world.u_scale**1.5)
    add(SPIKE, users, _start_times(world, rng, users, DAY_US), sizes)

    # account takeover: foreign IP, new device, draining within hours
    sizes = _sizes(rng, counts["account_takeover"], 3, 3.0, 12)
    users = _victims(world, rng, len(sizes), 12 * HOUR_US, uniform)
    part = add(TAKEOVER, users, _start_times(world, rng, users, 12 * HOUR_US), sizes)
    away = _other_country(rng, world.u_country[users])
    part["ring_ip"] = world.ring_ips_by_country.sample(away, rng.random(len(users)))

    # structuring: a few customers repeat sub-threshold movements over days
    span = min(10 * DAY_US, days_us * 3 // 10)
    sizes = _sizes(rng, counts["structuring"], 3, 2.0, 8)
    actors = _victims(world, rng, max(1, len(sizes) // 3), span, uniform)
    users = actors[rng.integers(0, len(actors), len(sizes))]
    add(STRUCTURING, users, _start_times(world, rng, users, span), sizes)

    # blacklisted entities
    sizes = _sizes(rng, counts["blacklisted"], 1, 1.0, 4)
    users = _victims(world, rng, len(sizes), 2 * DAY_US, uniform)
    part = add(BLACKLISTED, users, _start_times(world, rng, users, 2 * DAY_US), sizes)
    pools = (world.blacklisted_devices, world.blacklisted_ips, world.blacklisted_merchants,
             world.blacklisted_beneficiaries)  # fmt: skip
    kind = rng.integers(0, 4, len(users))
    part["bl_kind"] = kind
    part["bl_entity"] = np.array([pools[k][rng.integers(0, len(pools[k]))] for k in kind], dtype=np.int64)

    visit_user, visit_ts, visit_merchant, compromised = _plan_compromised(world, rng, counts, add)

    ep = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    ep["t0"] = np.minimum(ep["t0"], cfg.end_us - MINUTE_US)

    # ring devices appear the first time they are used
    ring = np.isin(ep["type"], (VELOCITY, TAKEOVER, COMPROMISED))
    first_use = np.full(len(world.d_first_seen), np.iinfo(np.int64).max)
    np.minimum.at(first_use, ep["ring_device"][ring], ep["t0"][ring])
    used = first_use < np.iinfo(np.int64).max
    world.d_first_seen[used] = first_use[used] - first_use[used] % 1_000_000 - MINUTE_US

    bl = _plan_blacklist(world, rng)
    return FraudPlan(
        ep_type=ep["type"],
        ep_user=ep["user"],
        ep_t0=ep["t0"],
        ep_size=ep["size"],
        ep_ring_device=ep["ring_device"],
        ep_ring_ip=ep["ring_ip"],
        ep_bl_kind=ep["bl_kind"],
        ep_bl_entity=ep["bl_entity"],
        visit_user=visit_user,
        visit_ts=visit_ts,
        visit_merchant=visit_merchant,
        compromised_merchants=compromised,
        bl_kind=bl[0],
        bl_entity=bl[1],
        bl_added=bl[2],
        bl_expires=bl[3],
    )


def _plan_compromised(
    world: World, rng: np.random.Generator, counts: dict[str, int], add: AddEpisodes
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    cfg = world.cfg
    total = counts["compromised_merchant"]
    empty = np.zeros(0, dtype=np.int64)
    if total == 0:
        return empty, empty, empty, empty
    n_users = world.n_users
    # Who pays where regularly: the breach exposes a merchant's regular customers.
    pairs = np.unique(world.u_pref.ravel() * n_users + np.repeat(np.arange(n_users), world.u_pref.shape[1]))
    pair_m, pair_u = pairs // n_users, pairs % n_users
    customers = np.bincount(pair_m, minlength=len(world.m_id))
    in_person = (world.m_kind == 0) & (world.m_cat < ref.N_PURCHASE) & (ref.CATEGORY_ECOM[world.m_cat] < 0.5)
    candidates = np.flatnonzero(in_person & (customers >= 1))
    # small merchants first: a skimmer in a corner shop, not a national chain
    candidates = candidates[
        np.argsort(customers[candidates] + rng.random(len(candidates)) * 5, kind="stable")
    ]
    needed = math.ceil(total / 8)
    cum = np.cumsum(customers[candidates] * 0.9)
    n_merchants = min(len(candidates), int(np.searchsorted(cum, needed)) + 1)
    chosen = rng.permutation(candidates[:n_merchants])
    # breach windows in the first half of the simulated period
    days_us = cfg.days * DAY_US
    w_len = min(14 * DAY_US, days_us // 5)
    w0 = cfg.start_us + DAY_US + (rng.random(len(chosen)) * (0.45 * days_us - DAY_US)).astype(np.int64)
    sel = np.isin(pair_m, chosen)
    v_m, v_u = pair_m[sel], pair_u[sel]
    keep = rng.random(len(v_u)) < 0.9
    v_m, v_u = v_m[keep], v_u[keep]
    order = rng.permutation(len(v_u))[: min(len(v_u), total)]
    v_m, v_u = v_m[order], v_u[order]
    if len(v_u) == 0:  # tiny worlds: anybody will do
        v_u = rng.integers(0, n_users, 1)
        v_m = chosen[:1] if len(chosen) else candidates[:1]
    where = np.searchsorted(np.sort(chosen), v_m)
    w_start = w0[np.argsort(chosen)][where]
    visit = w_start + (rng.random(len(v_u)) * w_len).astype(np.int64)
    visit = np.maximum(visit, world.u_created[v_u] + DAY_US + HOUR_US)
    visit = at_habit_hour(world, v_u, visit, rng)
    visit = np.clip(visit, world.u_created[v_u] + DAY_US, cfg.end_us - 2 * DAY_US)
    sizes = 1 + rng.multinomial(total - len(v_u), np.full(len(v_u), 1.0 / len(v_u)))
    delay = (rng.uniform(2, 10, len(v_u)) * DAY_US).astype(np.int64)
    t0 = at_habit_hour(world, v_u, visit + delay, rng)
    t0 = np.maximum(t0, visit + HOUR_US)
    add(COMPROMISED, v_u, t0, sizes.astype(np.int64))
    return v_u, visit, v_m, np.sort(chosen)


def _plan_blacklist(world: World, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Blacklist rows: every listed entity is listed before the window; some stale entries too."""
    cfg = world.cfg
    kinds = [
        (BL_DEVICE, world.blacklisted_devices),
        (BL_IP, world.blacklisted_ips),
        (BL_MERCHANT, world.blacklisted_merchants),
        (BL_BENEFICIARY, world.blacklisted_beneficiaries),
    ]
    kind = np.concatenate([np.full(len(e), k) for k, e in kinds])
    entity = np.concatenate([e for _, e in kinds])
    added = cfg.start_us - (rng.uniform(1, 365, len(kind)) * DAY_US).astype(np.int64)
    expires = np.where(
        rng.random(len(kind)) < 0.5,
        -1,
        cfg.end_us + (rng.uniform(30, 365, len(kind)) * DAY_US).astype(np.int64),
    )
    # Blacklisted devices existed before they were listed.
    dev = kind == BL_DEVICE
    world.d_first_seen[entity[dev]] = added[dev] - (rng.uniform(1, 60, int(dev.sum())) * DAY_US).astype(
        np.int64
    )
    # Stale entries: ring IPs listed long ago whose listing has expired before the window.
    stale = world.ring_ips[: max(1, len(world.ring_ips) // 10)]
    s_added = cfg.start_us - (rng.uniform(400, 700, len(stale)) * DAY_US).astype(np.int64)
    s_expires = s_added + (rng.uniform(90, 300, len(stale)) * DAY_US).astype(np.int64)
    kind = np.concatenate([kind, np.full(len(stale), BL_IP)])
    entity = np.concatenate([entity, stale])
    added = np.concatenate([added, s_added])
    expires = np.concatenate([expires, s_expires])
    added -= added % 1_000_000
    expires = np.where(expires < 0, -1, expires - expires % 1_000_000)
    return kind, entity, added, expires


# --- expansion into rows -------------------------------------------------------------------------

#: Per type: (mean gap between rows, minimum gap), µs.
_GAPS = {
    VELOCITY: (50 * 1_000_000, 5 * 1_000_000),
    SPIKE: (2 * HOUR_US, 5 * MINUTE_US),
    TAKEOVER: (12 * MINUTE_US, MINUTE_US),
    STRUCTURING: (15 * HOUR_US, 3 * HOUR_US),
    BLACKLISTED: (3 * HOUR_US, MINUTE_US),
    COMPROMISED: (12 * HOUR_US, 10 * MINUTE_US),
}


def expand(world: World, plan: FraudPlan, episodes: np.ndarray, rng: np.random.Generator) -> Rows:
    """Rows of the given episodes (indices into the plan), fraud code set, unsorted."""
    cfg = world.cfg
    size = plan.ep_size[episodes]
    ep = np.repeat(episodes, size)
    n = len(ep)
    first = np.concatenate(([0], np.cumsum(size)[:-1]))
    kind = plan.ep_type[ep]
    mean = np.array([_GAPS[k][0] for k in range(len(FRAUD_TYPES))])
    low = np.array([_GAPS[k][1] for k in range(len(FRAUD_TYPES))])
    gap = (low[kind] + rng.exponential(1.0, n) * mean[kind]).astype(np.int64)
    gap[first] = 0
    cum = np.cumsum(gap)
    ts = plan.ep_t0[ep] + cum - np.repeat(cum[first], size)
    ts = np.minimum(ts, cfg.end_us - 1_000_000)
    users = plan.ep_user[ep]
    rows = habit_rows(world, users, ts, rng)
    rows.fraud = kind.copy()
    home = world.u_country[users]
    base_amount = amounts(world, users, world.m_cat[rows.merchant], rng)

    def set_payee(mask: np.ndarray, merchant: np.ndarray, channel: np.ndarray) -> None:
        rows.merchant[mask] = merchant
        rows.channel[mask] = channel
        rows.account[mask] = account_for(world, users[mask], channel)
        present = mask.copy()
        present[mask] = (channel == ref.POS) | (channel == ref.ATM)
        rows.lat[present] = world.m_lat[rows.merchant[present]]
        rows.lon[present] = world.m_lon[rows.merchant[present]]
        rows.country[present] = world.m_country[rows.merchant[present]]
        remote = mask & ~present
        rows.lat[remote] = world.u_lat[users[remote]] + rng.normal(0, 0.01, int(remote.sum()))
        rows.lon[remote] = world.u_lon[users[remote]] + rng.normal(0, 0.01, int(remote.sum()))
        rows.country[remote] = home[remote]

    def own_device(mask: np.ndarray) -> None:
        """Use the user's phone (and home IP) where the row has no device."""
        fill = mask & (rows.device < 0)
        rows.device[fill] = world.u_phone[users[fill]]
        rows.ip[fill] = world.u_home_ip[users[fill]]

    def ring(mask: np.ndarray) -> None:
        ip = plan.ep_ring_ip[ep[mask]]
        rows.device[mask] = plan.ep_ring_device[ep[mask]]
        rows.ip[mask] = ip
        k = int(mask.sum())
        remote = (rows.channel[mask] == ref.ECOM) | (rows.channel[mask] == ref.TRANSFER)
        lat = world.ip_lat[ip] + rng.normal(0, 0.01, k)
        lon = world.ip_lon[ip] + rng.normal(0, 0.01, k)
        rows.lat[mask] = np.where(remote, lat, rows.lat[mask])
        rows.lon[mask] = np.where(remote, lon, rows.lon[mask])
        rows.country[mask] = np.where(remote, world.ip_country[ip], rows.country[mask])

    def random_shop(mask: np.ndarray, country: np.ndarray, online_boost: float) -> None:
        k = int(mask.sum())
        merchant = world.purchase_by_country.sample(country, rng.random(k))
        ecom = ref.CATEGORY_ECOM[world.m_cat[merchant]]
        channel = np.where(rng.random(k) < online_boost + (1 - online_boost) * ecom, ref.ECOM, ref.POS)
        set_payee(mask, merchant, channel)

    # high velocity: shops anywhere in the ring's country, small-to-normal amounts, ring device
    m = kind == VELOCITY
    random_shop(m, world.ip_country[plan.ep_ring_ip[ep[m]]], 0.45)
    ring(m)
    rows.amount[m] = rng.lognormal(np.log(20.0), 1.1, int(m.sum()))

    # amount spike: the user's habitual kind of payment, for several times the usual amount
    m = kind == SPIKE
    rows.amount[m] = base_amount[m] * rng.uniform(6.0, 15.0, int(m.sum()))

    # account takeover: new payees, online shops and a wallet provisioned on the ring's device
    m = kind == TAKEOVER
    k = int(m.sum())
    r = rng.random(k)
    channel = np.select([r < 0.4, r < 0.75], [ref.TRANSFER, ref.ECOM], ref.POS)
    abroad = world.ip_country[plan.ep_ring_ip[ep[m]]]
    merchant = np.where(
        channel == ref.TRANSFER,
        world.benef_by_country.sample(home[m], rng.random(k)),
        world.purchase_by_country.sample(np.where(channel == ref.POS, abroad, home[m]), rng.random(k)),
    )
    set_payee(m, merchant, channel)
    ring(m)
    rows.amount[m] = amounts(world, users[m], world.m_cat[merchant], rng) * rng.uniform(1.5, 4.0, k)

    # structuring: just under the threshold, by transfer, cash, online or in person
    m = kind == STRUCTURING
    k = int(m.sum())
    r = rng.random(k)
    channel = np.select([r < 0.4, r < 0.55, r < 0.75], [ref.TRANSFER, ref.ATM, ref.ECOM], ref.POS)
    merchant = np.where(
        channel == ref.TRANSFER,
        world.benef_by_country.sample(home[m], rng.random(k)),
        np.where(
            channel == ref.ATM,
            world.u_atm[users[m]],
            world.purchase_by_country.sample(home[m], rng.random(k)),
        ),
    )
    set_payee(m, merchant, channel)
    cash = m.copy()
    cash[m] = channel == ref.ATM
    own_device(m & (rows.channel != ref.POS) & ~cash)
    in_person = cash | (m & (rows.channel == ref.POS))
    rows.device[in_person] = -1
    rows.ip[in_person] = -1
    amount = cfg.structuring_threshold * rng.uniform(0.90, 0.995, k)
    rows.amount[m] = np.where(rng.random(k) < 0.4, np.floor(amount / 50.0) * 50.0, amount)

    # blacklisted: one listed device, IP, merchant or beneficiary in an otherwise ordinary payment
    m = kind == BLACKLISTED
    bl_kind = plan.ep_bl_kind[ep]
    entity = plan.ep_bl_entity[ep]
    via_person = m & ((bl_kind == BL_DEVICE) | (bl_kind == BL_IP))
    random_shop(via_person, home[via_person], 0.6)
    own_device(via_person)
    d = m & (bl_kind == BL_DEVICE)
    rows.device[d] = entity[d]
    i = m & (bl_kind == BL_IP)
    rows.ip[i] = entity[i]
    i &= (rows.channel == ref.ECOM) | (rows.channel == ref.TRANSFER)
    rows.country[i] = world.ip_country[entity[i]]
    rows.lat[i] = world.ip_lat[entity[i]]
    rows.lon[i] = world.ip_lon[entity[i]]
    bm = m & (bl_kind == BL_MERCHANT)
    k = int(bm.sum())
    ecom = ref.CATEGORY_ECOM[world.m_cat[entity[bm]]]
    set_payee(bm, entity[bm], np.where(rng.random(k) < 0.5 + 0.5 * ecom, ref.ECOM, ref.POS))
    bb = m & (bl_kind == BL_BENEFICIARY)
    set_payee(bb, entity[bb], np.full(int(bb.sum()), ref.TRANSFER))
    own_device(bm & (rows.channel == ref.ECOM))
    own_device(bb)
    rows.amount[m] = amounts(world, users[m], world.m_cat[rows.merchant[m]], rng) * rng.uniform(
        1.0, 2.0, int(m.sum())
    )

    # compromised merchant: stolen card details used online or on a cloned card, in the ring's country
    m = kind == COMPROMISED
    random_shop(m, world.ip_country[plan.ep_ring_ip[ep[m]]], 0.55)
    ring(m)
    cloned = m & (rows.channel == ref.POS)
    rows.device[cloned] = -1
    rows.ip[cloned] = -1
    rows.amount[m] = amounts(world, users[m], world.m_cat[rows.merchant[m]], rng) * rng.uniform(
        1.0, 2.5, int(m.sum())
    )

    rows.amount = finish_amounts(rows.amount, rows.channel)
    return rows


def visit_rows(world: World, plan: FraudPlan, visits: np.ndarray, rng: np.random.Generator) -> Rows:
    """The honest in-person payments at breached merchants that exposed the victims' cards."""
    users = plan.visit_user[visits]
    rows = habit_rows(world, users, plan.visit_ts[visits], rng)
    merchant = plan.visit_merchant[visits]
    rows.merchant = merchant
    rows.channel = np.full(len(users), ref.POS)
    rows.account = account_for(world, users, rows.channel)
    rows.device = np.full(len(users), -1)
    rows.ip = np.full(len(users), -1)
    rows.lat, rows.lon = world.m_lat[merchant].copy(), world.m_lon[merchant].copy()
    rows.country = world.m_country[merchant].copy()
    rows.amount = finish_amounts(amounts(world, users, world.m_cat[merchant], rng), rows.channel)
    rows.fraud = np.full(len(users), LEGIT, dtype=np.int64)
    return rows
