"""jobkit: serverless background jobs for AWS."""
