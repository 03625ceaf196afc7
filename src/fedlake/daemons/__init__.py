"""Background jobs: one runner, jobs named by what they do."""
