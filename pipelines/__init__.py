"""pitstop: reproducible, auditable ML training pipelines on Airflow, MLflow and Great Expectations."""
