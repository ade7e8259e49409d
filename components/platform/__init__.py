"""What every step stands on: config, artifact contracts, files, retries, failures, provenance."""
