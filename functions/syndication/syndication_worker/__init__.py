"""The syndication worker: a listing fans out to one signed HTTPS delivery per partner."""
