"""The label spine of the aircraft_utilisation example: one row per aircraft and UTC day.

An aircraft enters the spine on each UTC day on which it is scheduled to leave New York
(legs without a tail number are dropped). The prediction is made at 00:00 UTC of that day; the
target is the minutes it then spends airborne on those departures (`air_time`; cancelled and
diverted legs add nothing). Context columns come from the schedule, known at the cutoff: the
operator, the airport and local hour of the first departure, how many departures are planned,
the weekday and the month.
"""

from __future__ import annotations

import duckdb
import pandas as pd


def daily_air_minutes(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("legs", raw["legs"])
    return con.execute("""
        WITH leg AS (
            SELECT *, row_number() OVER (
                       PARTITION BY tailnum, _partition_day
                       ORDER BY time_hour + to_minutes(minute), carrier, flight, origin) AS nth
            FROM legs WHERE tailnum IS NOT NULL
        )
        SELECT tailnum || '-' || strftime(_partition_day, '%Y-%m-%d') AS aircraft_day,
               _partition_day AS prediction_time,
               tailnum,
               any_value(carrier) FILTER (WHERE nth = 1) AS carrier,
               any_value(origin) FILTER (WHERE nth = 1) AS origin,
               any_value(hour) FILTER (WHERE nth = 1) AS first_departure_hour,
               count(*) AS scheduled_legs,
               isodow(_partition_day) - 1 AS day_of_week,
               month(_partition_day) AS month,
               coalesce(sum(air_time), 0) AS air_minutes
        FROM leg GROUP BY tailnum, _partition_day ORDER BY aircraft_day
    """).df()
