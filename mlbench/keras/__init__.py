"""Keras-side helpers every Keras track shares: losses, metrics, the fit loop, device and precision policy."""
