"""The words the library and the command line share: the choices of the options that are not registries.
No imports, so that the ``gradcam`` command parses its arguments (and answers ``--help``) before torch
loads. Each name is re-exported where its concept lives (``engine.functional.NORMALIZATIONS``, …)."""

DEFAULT_MODEL = "efficientnet_lite0"  # the bundled ImageNet model: no download
NORMALIZATIONS = ("minmax", "max", "none")  # how a map is scaled (engine.functional)
PRECISIONS = ("fp32", "bf16", "fp16", "auto")  # the forward pass's precision (engine.precision)
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")  # the input's layout (engine.precision)
PICTURE_FORMATS = ("png", "jpg", "webp")  # picture files (render.files)
PICTURES = ("overlay", "heatmap", "grayscale", "figure")  # the pictures of an explained image (apps.pipeline.step)
TASKS = ("segmentation", "detection", "embedding", "binary", "multilabel", "regression")  # besides classification
DEVICES = ("cpu", "cuda")
