"""Scoring a model on the test split against its baseline: metrics, intervals, slices, report."""
