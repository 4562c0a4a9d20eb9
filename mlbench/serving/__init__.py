"""Exported artifacts: raw-string SavedModels, their loader, and what serves them."""
