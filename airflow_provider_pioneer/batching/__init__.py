"""Batch-inference machinery behind :class:`~airflow_provider_pioneer.operators.inference.PioneerInferenceOperator`.

Private to the provider: input readers (:mod:`.inputs`), the ordered output writer and its
checkpoint (:mod:`.output` keeps the design and re-exports :mod:`.store`, :mod:`.lease`,
:mod:`.sinks`, :mod:`.checkpoint` and :mod:`.file_sink`), the concurrent batch runner with 422
bisection (:mod:`.runner`), progress lines (:mod:`.progress`) and the run's summary and error
messages (:mod:`.report`). Nothing here imports Airflow's task machinery except the readers and
writers, which open paths through ``ObjectStoragePath``, and the Airflow exception classes.
"""
