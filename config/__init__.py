"""The shipped line configurations, installed as the package gateway.configs (see pyproject.toml)."""
