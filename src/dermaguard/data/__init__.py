"""Package data: the example configuration."""
