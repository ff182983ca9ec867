"""The review UI and the Prometheus endpoint (see :mod:`gateway.web.server`)."""
