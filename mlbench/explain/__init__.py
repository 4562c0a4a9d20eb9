"""Why a label was predicted: exact linear attributions and integrated gradients."""

from mlbench.explain.integrated_gradients import completeness_gap, integrated_gradients
from mlbench.explain.linear import LinearAttribution, LinearExplainer
from mlbench.explain.tracks import explain

__all__ = ["explain", "integrated_gradients", "completeness_gap", "LinearExplainer", "LinearAttribution"]
