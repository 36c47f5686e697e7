"""Methods that share one pass (engine.methods.together): each map equal to the method's own call, for one
forward pass instead of one per method."""

from __future__ import annotations

import pytest
import torch

import gradcam
from gradcam.engine.methods.together import explain_together, groups
from gradcam.engine.targets.sets import MultiLabel

SHARING = ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigengradcam", "eigencam", "kpcacam", "fem"]
ALONE = ["scorecam", "cam", "finercam", "guided-gradcam"]  # own passes, or their own use of the one pass


def counted(model):
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    return calls, handle


@pytest.mark.parametrize("options, targets, top_k", [
    ({}, None, None),
    ({}, 2, None),
    ({}, None, 2),
    ({"smooth": 2, "augment": True}, None, None),
])
def test_the_shared_pass_gives_each_methods_own_maps(two_stage, options, targets, top_k):
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    layers = ["stem", "features"]
    methods = [gradcam.create_method(name, two_stage, layers, **options) for name in SHARING]
    assert groups(methods, x, targets) == [list(range(len(SHARING)))]
    calls, handle = counted(two_stage)
    together = explain_together(methods, x, targets, top_k=top_k)
    shared_forwards = len(calls)
    handle.remove()
    assert shared_forwards == 1 + options.get("smooth", 0) + int(options.get("augment", False))
    for name, method, out in zip(SHARING, methods, together):
        alone = method(x, targets, top_k=top_k)
        assert torch.equal(out.targets, alone.targets) and out.layers == alone.layers == layers, name
        for a, b in zip(out.raw, alone.raw):
            scale = b.abs().amax().clamp_min(1e-12)
            assert ((a - b).abs().amax() / scale) <= 1e-6, name
        assert (out.maps - alone.maps).abs().amax() <= 1e-6, name


def test_methods_with_their_own_pass_or_other_settings_run_alone(two_stage):
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    methods = [gradcam.create_method("gradcam", two_stage, "features"),
               gradcam.create_method("hirescam", two_stage, "features"),
               gradcam.create_method("layercam", two_stage, "stem"),  # another layer
               gradcam.create_method("xgradcam", two_stage, "features", smooth=1),  # another pass
               gradcam.create_method("eigencam", two_stage, "features", precision="bf16"),
               gradcam.create_method("scorecam", two_stage, "features"),
               gradcam.create_method("cam", two_stage, "head"),
               gradcam.create_method("finercam", two_stage, "features"),
               gradcam.create_method("guided-gradcam", two_stage, "features")]
    assert groups(methods, x) == [[0, 1], [2], [3], [4], [5], [6], [7], [8]]
    outs = explain_together(methods, x)
    for method, out in zip(methods, outs):
        alone = method(x)
        assert torch.equal(out.targets, alone.targets)
        assert (out.maps - alone.maps).abs().amax() <= 1e-5, method.name
    # a target set (several objects, chosen from the output) runs every method alone
    assert groups(methods[:2], x, MultiLabel()) == [[0], [1]]
    # other class names (a named target is each method's own class), or a pass run another way: alone
    named = [gradcam.create_method("gradcam", two_stage, "features", labels=["a", "b", "c", "d"]),
             gradcam.create_method("hirescam", two_stage, "features", labels=["d", "c", "b", "a"])]
    assert groups(named, x, "a") == [[0], [1]]
    assert [int(out.targets[0]) for out in explain_together(named, x, "a")] == [0, 3]

    class Scaled(type(methods[0])):
        def run_model(self, x):
            return super().run_model(2 * x)

    assert groups([methods[0], Scaled(two_stage, "features")], x) == [[0], [1]]


def test_a_folder_step_runs_the_sharing_methods_from_one_pass(two_stage):
    """The per-batch step of `gradcam explain --method a,b,c`: the maps of each method alone, for one pass."""
    import numpy as np
    from PIL import Image

    from gradcam.apps.pipeline.step import ExplainStep
    from gradcam.render.files import MemorySink

    step = ExplainStep(MemorySink(), model=two_stage, method=["gradcam", "hirescam", "eigencam"], layer="features",
                       save=("grayscale",), save_maps=True)
    images = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    calls, handle = counted(two_stage)
    columns = step({"path": ["a.png", "b.png"], "image": list(images)})
    handle.remove()
    assert len(calls) == 1 and columns["status"] == ["ok"] * 6
    x = torch.stack([step.bundle.preprocess(Image.fromarray(a)) for a in images])
    for method, files, path in zip(columns["method"], columns["files"], columns["path"]):
        alone = gradcam.create_method(method, two_stage, "features")(x, normalize="none")
        expected = alone.raw[["a.png", "b.png"].index(path)].numpy()
        raw = step.sink.items[files["maps"]]
        assert np.abs(raw - expected).max() <= 1e-6 * max(1e-12, np.abs(expected).max()), method


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_shared_pass_on_cuda(two_stage, precision):
    model = two_stage.cuda()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2)).cuda()
    methods = [gradcam.create_method(name, model, "features", precision=precision) for name in SHARING]
    for name, method, out in zip(SHARING, methods, explain_together(methods, x)):
        alone = method(x)
        assert out.maps.device.type == "cuda" and torch.equal(out.targets, alone.targets), name
        scale = alone.raw.abs().amax().clamp_min(1e-12)
        assert ((out.raw - alone.raw).abs().amax() / scale) <= 1e-3, name
