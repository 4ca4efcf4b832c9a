"""Study storages: URLs, SQLite and PostgreSQL set-up, locks, retries, the gRPC proxy."""
