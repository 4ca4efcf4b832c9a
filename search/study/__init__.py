"""A study while it runs: creating or resuming it, the objective, workers, progress."""
