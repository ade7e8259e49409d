"""From a source to checked TFRecords: sources, ingest (local, Beam), schema, splits, checks."""
