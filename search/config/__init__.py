"""The run configuration: its schema (study TOML < flags) and the search space."""
