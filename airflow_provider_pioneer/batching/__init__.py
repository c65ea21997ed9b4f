"""Batch-inference machinery behind :class:`~airflow_provider_pioneer.operators.inference.PioneerInferenceOperator`.

Private to the provider: input readers (:mod:`.inputs`), the ordered output writer and its
checkpoint (:mod:`.output`), the concurrent batch runner with 422 bisection (:mod:`.runner`)
and progress reporting (:mod:`.progress`). Nothing here imports Airflow's task machinery
except :mod:`.inputs`/:mod:`.output`, which open paths through ``ObjectStoragePath``.
"""
