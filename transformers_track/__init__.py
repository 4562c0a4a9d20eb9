"""Transformer tracks: a from-scratch Keras encoder and a KerasHub pretrained encoder.

`encoder` (transformers_track.encoder) needs only Keras; `pretrained`
(transformers_track.pretrained) needs the `hub` extra.  Shared pieces live in
`base` (`TokenizedTrack`: options, fit, predict and export flow both tracks follow),
`layers` (Keras layers) and `training` (schedule, optimizer, length-bucketed data).
Nothing heavy is imported here, so the registry can probe the tracks cheaply.
"""
