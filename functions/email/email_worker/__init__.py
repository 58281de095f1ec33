"""The email worker: renders transactional emails from templates and sends them with SES v2."""
