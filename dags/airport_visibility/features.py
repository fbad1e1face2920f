"""Feature views of the airport_visibility example: plain functions of raw rows.

Each returns the view's keys (`origin`), `event_time` (UTC: when the fact became true) and
feature columns; pitstop adds `created_time = event_time + availability_lag` and shows a
training row only what was created by its cutoff. A day's rows read only the files delivered
up to that day and at most the view's lookback before it, so a partition has the same bytes
whether it is computed alone or inside a month-long backfill. Window aggregates are minima,
maxima, counts and integer sums, never float sums, whose last bit depends on how many rows a
query holds.
"""

from __future__ import annotations

import duckdb
import pandas as pd

MAX_WIND_MPH = 150  # above any recorded NYC gust; the raw suite tolerates rare glitches
LATE_MINUTES = 15


def _sql(sql: str, **frames: pd.DataFrame) -> pd.DataFrame:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, frame in frames.items():
        con.register(name, frame)
    return con.execute(sql).df()


def origin_weather(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The hourly observation at each airport, with the temperature/dew-point spread.

    A spread near zero means saturated air: the usual sign of fog to come. Implausible wind
    speeds become null.
    """
    return _sql(f"""
        SELECT origin, time_hour AS event_time, visib, humid, temp, dewp,
               temp - dewp AS dewpoint_spread,
               CASE WHEN wind_speed <= {MAX_WIND_MPH} THEN wind_speed END AS wind_speed,
               wind_dir, precip, pressure
        FROM weather ORDER BY time_hour, origin
    """, weather=raw["weather"])


def visibility_trend(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """How visibility and humidity moved over the 6 hours up to each observation.

    The window holds the airport's observations of [t - 6h, t]; the changes compare the
    observation at t with the one exactly 3 and 6 hours before (null when that hour is
    missing); `neighbours_visib_min` is the lowest visibility at the other NYC airports at t
    (fog and snow bands move across the city). An hour's row reads today's and yesterday's
    files only (the view's 1-day lookback).
    """
    return _sql("""
        WITH obs AS (
            SELECT origin, time_hour, visib, humid, temp - dewp AS spread, precip
            FROM weather
        ), win AS (
            SELECT origin, time_hour,
                   min(visib) OVER w AS visib_min_6h,
                   max(visib) OVER w AS visib_max_6h,
                   min(spread) OVER w AS dewpoint_spread_min_6h,
                   count(*) FILTER (WHERE precip > 0) OVER w AS precip_hours_6h,
                   count(*) OVER w AS observations_6h
            FROM obs
            WINDOW w AS (PARTITION BY origin ORDER BY time_hour
                         RANGE BETWEEN INTERVAL 6 HOURS PRECEDING AND CURRENT ROW)
        )
        SELECT o.origin, o.time_hour AS event_time,
               win.visib_min_6h, win.visib_max_6h,
               o.visib - b3.visib AS visib_change_3h,
               o.visib - b6.visib AS visib_change_6h,
               o.humid - b6.humid AS humid_change_6h,
               win.dewpoint_spread_min_6h, win.precip_hours_6h, win.observations_6h,
               (SELECT min(n.visib) FROM obs n
                 WHERE n.time_hour = o.time_hour AND n.origin <> o.origin) AS neighbours_visib_min
        FROM obs o
        JOIN win USING (origin, time_hour)
        LEFT JOIN obs b3 ON b3.origin = o.origin AND b3.time_hour = o.time_hour - INTERVAL 3 HOURS
        LEFT JOIN obs b6 ON b6.origin = o.origin AND b6.time_hour = o.time_hour - INTERVAL 6 HOURS
        ORDER BY o.time_hour, o.origin
    """, weather=raw["weather"])


def origin_delays(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Departure delays at the airport over the 3 hours up to each departure.

    A proxy for conditions: ground delay programmes follow low ceilings and visibility. A
    flight counts once it has left (scheduled time plus departure delay; cancelled flights
    never leave). A departure delivered in the next day's file but leaving before its
    midnight counts from that midnight, so a day depends only on files delivered up to it.
    Departures in the same minute fold into one event: one row per (origin, event_time).
    """
    return _sql(f"""
        WITH departed AS (
            SELECT origin,
                   greatest(time_hour + to_minutes(minute)
                            + to_minutes(CAST(dep_delay AS BIGINT)), _partition_day) AS t,
                   CAST(dep_delay AS BIGINT) AS delay
            FROM flights WHERE dep_delay IS NOT NULL
        ), per_minute AS (
            SELECT origin, t, sum(delay) AS total, count(*) AS n,
                   count(*) FILTER (WHERE delay > {LATE_MINUTES}) AS late
            FROM departed GROUP BY origin, t
        )
        SELECT origin, t AS event_time,
               sum(total) OVER w / sum(n) OVER w AS dep_delay_mean,
               sum(n) OVER w AS departures,
               sum(late) OVER w / sum(n) OVER w AS delayed_share
        FROM per_minute
        WINDOW w AS (PARTITION BY origin ORDER BY t
                     RANGE BETWEEN INTERVAL 3 HOURS PRECEDING AND CURRENT ROW)
        ORDER BY t, origin
    """, flights=raw["flights"])
