"""The Airflow names this provider imports whose home moved between Airflow 3 minors.

Airflow 3.2 moved the exception classes into the Task SDK (``airflow.sdk.exceptions``); on 3.1
they live in ``airflow.exceptions`` only. Since 3.2 ``airflow.exceptions`` re-exports the SDK's
classes (deprecated), so importing from the SDK first gives the same class objects on every
supported version and no deprecation warning on the new ones. Everything else the provider needs
(``BaseHook``, ``BaseOperator``, ``BaseOperatorLink``, ``Variable``, ``ObjectStoragePath``,
``mask_secret``) is in ``airflow.sdk`` since 3.1, the lowest Airflow this provider supports.
"""

from __future__ import annotations

try:  # Airflow >= 3.2
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
except ImportError:  # Airflow 3.1
    from airflow.exceptions import (  # type: ignore[no-redef,attr-defined,unused-ignore]
        AirflowException,
        AirflowFailException,
    )

__all__ = ["AirflowException", "AirflowFailException"]
