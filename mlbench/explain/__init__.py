"""Why a label was predicted: in-graph attributions shared by fitted tracks and exports."""

from mlbench.explain.graph import GraphExplainer, path_attributions
from mlbench.explain.integrated_gradients import completeness_gap, integrated_gradients
from mlbench.explain.tracks import explain, explainer_of

__all__ = ["explain", "explainer_of", "GraphExplainer", "path_attributions", "integrated_gradients",
           "completeness_gap"]
