"""Feature views of the flights example: plain functions of raw rows.

Each returns the view's keys, `event_time` (UTC: when the fact became true) and feature
columns. pitstop adds `created_time = event_time + availability_lag` and makes sure a training
row only sees rows created before its cutoff, so these functions need no notion of "now".
"""

from __future__ import annotations

import duckdb
import pandas as pd

WEATHER = ["temp", "dewp", "humid", "wind_speed", "precip", "pressure", "visib"]
MAX_WIND_MPH = 150  # above any recorded NYC gust; the raw suite tolerates rare glitches


def origin_weather(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The hourly observation at each origin airport; implausible wind speeds become null."""
    weather = raw["weather"]
    frame = weather[["origin", "time_hour", *WEATHER]].rename(columns={"time_hour": "event_time"})
    return frame.assign(wind_speed=frame["wind_speed"].where(frame["wind_speed"] <= MAX_WIND_MPH))


def _departure_delays(flights: pd.DataFrame, key: str) -> pd.DataFrame:
    """Delay statistics over the 3 hours up to each departure, per `key`.

    A flight counts once it has actually left (scheduled time plus departure delay); cancelled
    flights never leave. An early departure delivered in the next day's file (scheduled just
    after midnight, left before it) counts from that file's midnight: each day's features then
    depend only on files delivered up to that day, whatever range a backfill covers.
    Departures in the same minute are folded into one event, so each (key, event_time) has
    one row.
    """
    sql = f"""
        WITH departed AS (
            SELECT {key} AS k,
                   greatest(time_hour + to_minutes(minute)
                            + to_minutes(CAST(dep_delay AS BIGINT)), _partition_day) AS t,
                   dep_delay
            FROM flights WHERE dep_delay IS NOT NULL
        ), per_minute AS (
            SELECT k, t, sum(dep_delay) AS total, count(*) AS n,
                   count(*) FILTER (WHERE dep_delay > 15) AS late
            FROM departed GROUP BY k, t
        )
        SELECT k AS {key}, t AS event_time,
               sum(total) OVER w / sum(n) OVER w AS dep_delay_mean,
               sum(n) OVER w AS departures,
               sum(late) OVER w / sum(n) OVER w AS delayed_share
        FROM per_minute
        WINDOW w AS (PARTITION BY k ORDER BY t
                     RANGE BETWEEN INTERVAL 3 HOURS PRECEDING AND CURRENT ROW)
    """
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("flights", flights)
    return con.execute(sql).df()


def origin_delays(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return _departure_delays(raw["flights"], "origin")


def carrier_delays(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return _departure_delays(raw["flights"], "carrier")


def plane(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Aircraft attributes, valid from the day the fleet snapshot was delivered."""
    planes = raw["planes"]
    return pd.DataFrame({
        "tailnum": planes["tailnum"],
        "event_time": planes["_partition_day"],
        "year": planes["year"],
        "seats": planes["seats"],
        "engines": planes["engines"],
    })
