"""Analyses: plain functions on artifacts (fits with intervals, never the dynamics)."""
