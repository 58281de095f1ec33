"""The nightly worker: a cron-fired parent job fans out one child job per account."""
