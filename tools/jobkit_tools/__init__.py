"""Developer tools for jobkit: the CLI and the local stack (not shipped in the Lambda layer)."""
