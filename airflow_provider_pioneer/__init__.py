"""Apache Airflow provider for Pioneer (GLiNER entity extraction, docs.pioneer.ai)."""

from __future__ import annotations

__version__ = "0.1.0"
