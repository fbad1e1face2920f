"""The label spine of airport_visibility: one row per NYC airport and observed hour.

Each hourly observation at an airport (`origin`, `time_hour`) is a target: its visibility,
in three classes. The prediction is made 3 hours before that hour (`prediction_time`), so
the views only show what was published by then (the latest observation is then at least
4 hours older than the target). Hours with no observation have no row: there is nothing to
learn from or score. The local hour of the target and the month ride along as context: they
are known in advance.

Classes (statute miles): `low` below 3 (instrument conditions), `reduced` from 3 to below
10, `clear` at 10, the sensor's ceiling. In January and February 2013 that is about 8%, 15%
and 77% of airport-hours.
"""

from __future__ import annotations

import pandas as pd

LEAD = pd.Timedelta(hours=3)
LOW_BELOW = 3.0
CLEAR_AT = 10.0


def visibility_class(visib: pd.Series) -> pd.Series:
    """`low` / `reduced` / `clear` for visibilities in miles (null stays null)."""
    out = pd.Series(pd.NA, index=visib.index, dtype="object")
    out[visib < LOW_BELOW] = "low"
    out[(visib >= LOW_BELOW) & (visib < CLEAR_AT)] = "reduced"
    out[visib >= CLEAR_AT] = "clear"
    return out


def visibility_in_3h(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    weather = raw["weather"]
    weather = weather[weather["visib"].notna()]
    target_time = weather["time_hour"]
    return pd.DataFrame({
        "station_hour": weather["origin"] + "-" + target_time.dt.strftime("%Y%m%dT%H00Z"),
        "prediction_time": target_time - LEAD,
        "target_time": target_time,
        "origin": weather["origin"],
        "target_hour": weather["hour"],
        "month": weather["month"],
        "visibility_class": visibility_class(weather["visib"]),
    }).sort_values("station_hour", ignore_index=True)
