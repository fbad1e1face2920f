"""Feature views of the aircraft_utilisation example: plain functions of raw rows.

Each returns the view's keys, `event_time` (UTC: when the fact became true) and feature
columns; pitstop adds `created_time = event_time + availability_lag` and shows a training row
only what was created by its cutoff. Each day's rows are computed from the files delivered up
to that day and no earlier than the view's lookback, so a day's partition has the same bytes
whether it is computed alone or inside a month-long backfill.
"""

from __future__ import annotations

import duckdb
import pandas as pd

WEEK_DAYS = 7  # the aircraft view's window; its `lookback` in the spec is the same 7 days
TAXI_AND_REPORT_MINUTES = 60  # taxi out, taxi in and the report reaching the register
LONGEST_LEG_MINUTES = 720  # assumed for a leg with no recorded air time (cancelled or diverted)
MAX_WIND_MPH = 150  # above any recorded NYC gust; the raw suite tolerates rare glitches


def _sql(sql: str, **frames: pd.DataFrame) -> pd.DataFrame:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, frame in frames.items():
        con.register(name, frame)
    return con.execute(sql).df()


def aircraft_week(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """What each aircraft flew from NYC over the 7 days before each UTC midnight.

    A row at midnight W covers the legs scheduled in the 7 delivery days before W, and uses a
    leg only once its outcome was known by W: scheduled departure + departure delay + air
    time + `TAXI_AND_REPORT_MINUTES`. A leg with no air time (cancelled, or diverted) counts
    `LONGEST_LEG_MINUTES` instead, since nothing says when the decision was made. Legs not
    yet known at W are only counted (`legs_unfinished`). So the row is fully known at W (no
    availability lag), and it reads only the files of days W-7..W-1, which the view's 7-day
    lookback always provides.
    """
    return _sql(f"""
        WITH leg AS (
            SELECT tailnum, _partition_day AS day, air_time, dep_delay IS NULL AS cancelled,
                   time_hour + to_minutes(minute) + to_minutes(CAST(
                       coalesce(dep_delay, 0) + coalesce(air_time, {LONGEST_LEG_MINUTES})
                       + {TAXI_AND_REPORT_MINUTES} AS BIGINT)) AS finished
            FROM legs WHERE tailnum IS NOT NULL
        ), seen AS (
            SELECT leg.*, day + to_days(CAST(k AS INTEGER)) AS w, finished <= w AS done
            FROM leg, range(1, {WEEK_DAYS + 1}) AS ahead(k)
        )
        SELECT tailnum, w AS event_time,
               count(*) FILTER (WHERE done AND air_time IS NOT NULL) AS legs_flown,
               coalesce(sum(air_time) FILTER (WHERE done), 0) AS air_minutes,
               count(DISTINCT day) FILTER (WHERE done AND air_time IS NOT NULL) AS days_flown,
               count(*) FILTER (WHERE done AND cancelled) AS legs_cancelled,
               coalesce(sum(air_time) FILTER (WHERE done AND day = w - INTERVAL 1 DAY), 0)
                   AS air_minutes_last_day,
               coalesce(sum(air_time) FILTER (WHERE done AND day = w - INTERVAL {WEEK_DAYS} DAY),
                        0) AS air_minutes_week_ago,
               count(*) FILTER (WHERE NOT done) AS legs_unfinished
        FROM seen GROUP BY tailnum, w ORDER BY w, tailnum
    """, legs=raw["legs"])


def origin_conditions(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The last 24 hours at each NYC airport, as of every hourly observation.

    The window holds the observations of (t - 24h, t], so an hour's row reads today's and
    yesterday's files only (the view's 1-day lookback); implausible wind speeds are ignored.
    Precipitation is summed in whole hundredths of an inch: DuckDB adds a window's doubles in
    an order that depends on how many rows the query holds, so a float sum could differ in
    its last bit between a one-day run and a month-long backfill.
    """
    return _sql(f"""
        SELECT origin, time_hour AS event_time,
               sum(CAST(round(precip * 100) AS BIGINT)) OVER day / 100 AS precip_24h,
               min(visib) OVER day AS visib_min_24h,
               max(CASE WHEN wind_speed <= {MAX_WIND_MPH} THEN wind_speed END) OVER day
                   AS wind_max_24h,
               min(temp) OVER day AS temp_min_24h
        FROM observations
        WINDOW day AS (PARTITION BY origin ORDER BY time_hour
                       RANGE BETWEEN INTERVAL 23 HOURS PRECEDING AND CURRENT ROW)
        ORDER BY time_hour, origin
    """, observations=raw["observations"])


def airframe(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Attributes of each aircraft, valid from the day the fleet register was delivered."""
    fleet = raw["fleet"]
    return pd.DataFrame({
        "tailnum": fleet["tailnum"],
        "event_time": fleet["_partition_day"],
        "year": fleet["year"],
        "seats": fleet["seats"],
        "engines": fleet["engines"],
        "manufacturer": fleet["manufacturer"],
        "engine": fleet["engine"],
    })
