"""Keras-side helpers every Keras track shares: losses, metrics, the fit loop, device and precision policy.

Importing this package does not start TensorFlow; its modules do.
"""

#: the losses `--loss` accepts (built by `mlbench.keras.losses.make_loss`); named here so the
#: command line can validate them before TensorFlow is imported
LOSS_NAMES: tuple[str, ...] = ("bce", "wbce", "focal", "cb", "rfl", "ntr", "db", "cbntr")
