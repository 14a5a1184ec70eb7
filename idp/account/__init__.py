"""Self-service account pages."""
