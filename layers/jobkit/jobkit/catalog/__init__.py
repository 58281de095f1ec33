"""Job types of the built-in workers. Producers import these; no worker code comes along."""
