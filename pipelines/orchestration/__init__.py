"""The only package of pitstop that imports Airflow: it wires library calls into DAGs."""
