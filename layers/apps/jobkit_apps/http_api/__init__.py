"""The Jobs HTTP API: producers in any language enqueue typed jobs, operators read and recover
them, over API Gateway (HTTP API, IAM-authorized) and the `functions/api` Lambda.

`resolver` builds the Powertools Event Handler resolver and its OpenAPI document; the routes
(`routes_jobs`, `routes_queues`) call plain functions (`calls`) of the library's `Jobkit`
client; `errors` turns every error into `{"error": {"code", "message"}}`; `models` holds the
bodies; `deployed` is the resolver the deployed function serves.
"""
