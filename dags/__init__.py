"""Airflow DAGs: thin wiring over the library (see dags/common.py)."""
