from airflow.sdk import dag

from airflow_provider_pioneer.operators.inference import PioneerInferenceOperator


@dag(schedule=None)
def news_entities():
    PioneerInferenceOperator(
        task_id="extract",
        model_id="fastino/gliner2-base-v1",
        texts=["Ada Lovelace worked with Charles Babbage in London.", "Apple opened an office in Paris."],
        entities=["person", "organization", "location"],
    )


news_entities()
