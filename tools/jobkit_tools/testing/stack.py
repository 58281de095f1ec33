"""The harness's stack in moto: the tables as template.yaml declares them, and a queue with its
dead-letter queue for each queue of the job types."""

from __future__ import annotations

import json
from typing import Any

from jobkit import aws

# The job log, as template.yaml's JobsTable declares it (tests/unit/test_testing_schema.py
# keeps the two the same).
JOB_LOG_TABLE: dict[str, Any] = {
    "BillingMode": "PAY_PER_REQUEST",
    "AttributeDefinitions": [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "state_shard", "AttributeType": "S"},
        {"AttributeName": "updated_at", "AttributeType": "S"},
    ],
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
    "GlobalSecondaryIndexes": [
        {
            "IndexName": "by_state",
            "KeySchema": [
                {"AttributeName": "state_shard", "KeyType": "HASH"},
                {"AttributeName": "updated_at", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        },
    ],
}
JOB_LOG_TTL: dict[str, Any] = {"AttributeName": "expires_at", "Enabled": True}
# The job pages (listings), as template.yaml's JobPagesTable declares it.
PAGES_TABLE: dict[str, Any] = {
    "BillingMode": "PAY_PER_REQUEST",
    "AttributeDefinitions": [
        {"AttributeName": "queue", "AttributeType": "S"},
        {"AttributeName": "page", "AttributeType": "S"},
    ],
    "KeySchema": [
        {"AttributeName": "queue", "KeyType": "HASH"},
        {"AttributeName": "page", "KeyType": "RANGE"},
    ],
}
# The reminders' documents records, as template.yaml's ApplicationsTable declares it.
APPLICATIONS_TABLE: dict[str, Any] = {
    "BillingMode": "PAY_PER_REQUEST",
    "AttributeDefinitions": [{"AttributeName": "applicant_id", "AttributeType": "S"}],
    "KeySchema": [{"AttributeName": "applicant_id", "KeyType": "HASH"}],
}


def create_tables(table: str, applications_table: str, pages_table: str) -> None:
    """The job log (with its TTL), the pages table and the applications table."""
    ddb: Any = aws.dynamodb()  # the schema is plain dicts, shared with a unit test
    ddb.create_table(TableName=table, **JOB_LOG_TABLE)
    ddb.update_time_to_live(TableName=table, TimeToLiveSpecification=JOB_LOG_TTL)
    ddb.create_table(TableName=pages_table, **PAGES_TABLE)
    ddb.create_table(TableName=applications_table, **APPLICATIONS_TABLE)


def create_queue(
    sqs: Any, name: str, visibility_timeout: int, max_receive_count: int
) -> tuple[str, str]:
    """Queue `name` and its dead-letter queue `<name>-dlq`: their URLs."""
    dlq_url = sqs.create_queue(
        QueueName=f"{name}-dlq", Attributes={"MessageRetentionPeriod": "1209600"}
    )["QueueUrl"]
    redrive = {
        "deadLetterTargetArn": queue_arn(sqs, dlq_url),
        "maxReceiveCount": str(max_receive_count),
    }
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps(redrive),
        },
    )["QueueUrl"]
    return str(url), str(dlq_url)


def queue_arn(sqs: Any, queue_url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])
