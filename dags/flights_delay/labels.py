"""The label spine of the flights example: one row per scheduled departure.

The cutoff (`prediction_time`) is two hours before the scheduled departure, in UTC. The label
is 1 when the flight arrived more than 15 minutes late, and also when it was cancelled or
diverted (no arrival delay recorded): for a traveller both are worse than a delay. Columns
that are known from the schedule itself (route, carrier, hour) ride along as context.
"""

from __future__ import annotations

import pandas as pd

LATE_MINUTES = 15


def arrival_delayed(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    flights = raw["flights"]
    scheduled = flights["time_hour"] + pd.to_timedelta(flights["minute"], unit="min")
    local_day = pd.to_datetime(flights[["year", "month", "day"]])
    return pd.DataFrame({
        "flight_id": flights["carrier"] + flights["flight"].astype(str) + "-"
        + flights["origin"] + "-" + scheduled.dt.strftime("%Y%m%dT%H%MZ"),
        "prediction_time": scheduled - pd.Timedelta(hours=2),
        "origin": flights["origin"],
        "dest": flights["dest"],
        "carrier": flights["carrier"],
        "tailnum": flights["tailnum"],
        "distance": flights["distance"],
        "sched_dep_hour": flights["hour"],
        "day_of_week": local_day.dt.dayofweek,
        "delayed": (flights["arr_delay"].isna() | (flights["arr_delay"] > LATE_MINUTES))
        .astype("int64"),
    })
