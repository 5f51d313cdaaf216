"""A one-model Django app for bench/auditlog_baseline.py (django-auditlog's cost)."""
