"""What-if replay over a recorded hour of the hil/ plant, through a real journal."""

from __future__ import annotations

from pathlib import Path

import msgspec

from avila_edge.config.model import JournalConfig
from avila_edge.core import Reading, SystemClock
from avila_edge.journal import Journal
from avila_edge.twins.replay import replay_journal
from hil.plant import PumpPlant

from .conftest import PUMP_TYPE, site


def recorded_hour() -> list[Reading]:
    """One simulated hour of the pump at 1 reading/s per point, the bearing degrading from minute 20."""
    plant = PumpPlant(seed=5)
    out: list[Reading] = []
    t0 = 1_800_000_000 * 10**9
    for second in range(3600):
        if second == 1200:
            plant.degrade_bearing(0.9)
        plant.step(1.0)
        ts = t0 + second * 10**9
        v = plant.values()
        for name in ("flow", "pressure", "motor_temperature", "vibration"):
            out.append(Reading(point=f"pump1/{name}", value=round(v[name], 3), ts_source=ts, ts_gateway=ts))
    return out


async def test_a_lower_vibration_limit_reports_the_alarms_it_would_have_raised(tmp_path: Path) -> None:
    readings = recorded_hour()
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal:
        for i in range(0, len(readings), 1000):
            await journal.append(readings[i : i + 1000])
        base = site()
        strict = dict(
            PUMP_TYPE, alarms=[dict(a, limit=3.0) if a["id"] == "vibration" else a for a in PUMP_TYPE["alarms"]]
        )
        variant = site(pump_type=strict)
        start, end = readings[0].ts_gateway, readings[-1].ts_gateway + 1
        first = await replay_journal(journal, base, variant, start_ns=start, end_ns=end)
        second = await replay_journal(journal, base, variant, start_ns=start, end_ns=end)
    assert first.readings == len(readings)
    assert msgspec.json.encode(first) == msgspec.json.encode(second)  # deterministic
    variant_only = [(c.alarm, c.transition) for c in first.only_with_variant]
    assert ("pump1/vibration", "raised") in variant_only
    raised_at = next(c.ts for c in first.only_with_variant if c.transition == "raised")
    assert raised_at > readings[0].ts_gateway + 1200 * 10**9  # only after the bearing started to wear
    assert not any(c.alarm == "pump1/vibration" for c in first.alarms_as_configured)
