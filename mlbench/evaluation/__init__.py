"""Metrics, decision rules, cross-fitting and selection: everything that turns scores into numbers."""
