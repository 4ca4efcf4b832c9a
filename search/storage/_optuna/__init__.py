"""Everything of the service that reaches into Optuna's private API."""
