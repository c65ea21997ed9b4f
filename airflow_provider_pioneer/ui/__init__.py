"""The Pioneer view in the Airflow UI: an Airflow plugin (``plugin.PioneerViewPlugin``) serving one page."""
