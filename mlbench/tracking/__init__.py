"""Sending a finished run to the trackers practitioners keep (MLflow); optional extras.

Consumers of the RunRecord after the run: nothing here runs during an experiment.
"""
