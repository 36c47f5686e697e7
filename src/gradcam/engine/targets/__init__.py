"""What to explain: the score y^c (pre-softmax) of a class, chosen per sample (:mod:`.classes`), any custom
score (:mod:`.custom`), a named target for other tasks (:mod:`.tasks`), detection (:mod:`.detection`), or
several maps per sample (:mod:`.sets`)."""

from gradcam.engine.targets.classes import (
    TargetSpec,
    class_index,
    class_scores,
    class_spec,
    extract_logits,
    parse_targets,
    resolve_classes,
)
from gradcam.engine.targets.custom import Target, copy_scores, custom_scores, sample_scores
from gradcam.engine.targets.detection import Box, Detections, detected_boxes, detections, is_detection
from gradcam.engine.targets.sets import Chosen, MultiLabel, TargetSet
from gradcam.engine.targets.tasks import Binary, ClassRegion, Regression, Similarity, TaskTarget, segmentation_scores

__all__ = ["Binary", "Box", "Chosen", "ClassRegion", "Detections", "MultiLabel", "Regression", "Similarity",
           "Target", "TargetSet", "TargetSpec", "TaskTarget", "class_index", "class_scores", "class_spec",
           "copy_scores", "custom_scores", "detected_boxes", "detections", "extract_logits", "is_detection",
           "parse_targets", "resolve_classes", "sample_scores", "segmentation_scores"]
