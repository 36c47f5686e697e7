"""Trust metrics, one call shape ``Metric(model, **options)(x, maps, targets)`` and a registry
(:mod:`.registry`): faithfulness (deletion and insertion, Average Drop and Increase in Confidence, ROAD),
localisation (pointing game, energy inside a mask) and sanity (model-parameter randomisation)."""

from gradcam.metrics.faithfulness import Confidence, DeletionInsertion
from gradcam.metrics.localisation import energy_inside, pointing_game
from gradcam.metrics.registry import MetricInfo, create_metric, list_metrics, metric_info, per_sample, register_metric
from gradcam.metrics.road import ROAD
from gradcam.metrics.sanity import ParameterRandomisation

__all__ = ["ROAD", "Confidence", "DeletionInsertion", "MetricInfo", "ParameterRandomisation", "create_metric",
           "energy_inside", "list_metrics", "metric_info", "per_sample", "pointing_game", "register_metric"]
