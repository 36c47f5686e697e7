"""Each command's examples, shown under its ``--help`` (and the whole command's under ``gradcam --help``)."""

EXAMPLES = {
    "": """examples (each command has its own: gradcam COMMAND --help):
  gradcam explain cat.jpg                         # the bundled EfficientNet-Lite0, the predicted class
  gradcam explain val/ --out maps --resume         # a folder: overlays, a manifest, progress
  gradcam compare cat.jpg --models resnet50,vgg19:random
  gradcam evaluate photos/ --methods gradcam,hirescam   # which maps are faithful to the model
  gradcam sanity photos/ --methods gradcam,guided-backprop   # which maps change with the model
  gradcam concepts cat.jpg                        # the concepts a layer sees, their regions and classes
  gradcam serve                                   # the web app on http://127.0.0.1:8000/
""",
    "explain": """examples:
  gradcam explain cat.jpg                         # bundled EfficientNet-Lite0, predicted class
  gradcam explain photos/*.jpg --out maps --top-k 3
  gradcam explain val/ --out maps --workers 2 --resume    # a folder: overlays, manifest, progress
  gradcam explain val/ --out maps --engine ray             # Ray Data here; --address HOST:PORT joins a cluster
  gradcam explain cat.jpg --target "tiger cat" --normalize max --colormap inferno
  gradcam explain cat.jpg --method all --max-channels 64   # every method, one comparison figure
  gradcam explain xray.png --model resnet50 --weights my_resnet50.pth --layer layer4
  gradcam explain cat.jpg --model resnet18:random  # seeded random weights: try the pipeline offline
  gradcam explain street.jpg --model fasterrcnn_resnet50_fpn_v2 --task detection --min-score 0.7
  gradcam explain street.jpg --model deeplabv3_resnet50 --task segmentation --class car
  gradcam explain a.jpg --model my_net.py:Embedder --weights e.pth --task embedding --reference b.jpg
  gradcam explain shapes/circle/0000.png --checkpoint shapes-model
""",
    "compare": """examples:
  gradcam compare cat.jpg dog.jpg --models resnet50,vgg19,timm/xception41
  gradcam compare cat.jpg --models efficientnet_lite0,resnet50=my_resnet50.pth --target "tiger cat"
  gradcam compare cat.jpg --models efficientnet_lite0,resnet18:random   # a trained model against noise
""",
    "evaluate": """examples:
  gradcam evaluate photos/ --methods gradcam,hirescam,layercam
  gradcam evaluate photos/ --methods all --steps 10 --score logit
  gradcam evaluate shapes/ --checkpoint shapes-model --metrics deletion
  gradcam evaluate val/ --engine ray --address HEAD:6379  # on a Ray cluster, the same numbers
""",
    "audit": """examples:
  gradcam make-shapes shapes/ --shortcut && gradcam train shapes/ --arch small-cnn --out shapes-model
  gradcam audit shapes/ --checkpoint shapes-model            # the held-out images the checkpoint names
  gradcam audit shapes/ --checkpoint shapes-model --files held_out.txt --method hirescam
  gradcam audit photos/ --masks photos-masks/ --tolerance 15 --fail-on-flag   # masks, a pipeline's status
  gradcam audit photos/                            # no annotation: each map against its class's average
  gradcam audit /shared/shapes --checkpoint shapes-model --engine ray   # on Ray Data, the same figures
""",
    "sanity": """examples:
  gradcam sanity photos/                           # Grad-CAM and Guided Backprop under randomisation
  gradcam sanity shapes/ --model shapes-model --methods all --fail-on-flag
""",
    "sweep": """examples:
  gradcam sweep cat.jpg                           # one layer per resolution stage, shallow to deep
  gradcam sweep cat.jpg dog.jpg --model resnet50 --layers layer2,layer3,layer4
""",
    "concepts": """examples:
  gradcam concepts cat.jpg                        # 5 concepts at the automatic layer: a picture, concepts.csv
  gradcam concepts photos/ --model resnet50 --concepts 3 --top-classes 3 --out concepts
  gradcam concepts shapes/circle --checkpoint shapes-model --format jpg
""",
    "serve": """examples:
  gradcam serve                                   # http://127.0.0.1:8000/, the bundled model
  gradcam serve --model efficientnet_lite0 --model resnet50 --host 0.0.0.0 --port 8080
""",
    "train": """examples:
  gradcam make-shapes shapes/ && gradcam train shapes/ --arch small-cnn --epochs 10 --out shapes-model
  gradcam train my_photos/ --out my-model --fine-tune --epochs 3
""",
    "make-shapes": """examples:
  gradcam make-shapes shapes/ --n 400 --size 96
  gradcam make-shapes shortcut/ --shortcut        # a corner mark tells the class: a model to audit
""",
    "layers": """examples:
  gradcam layers --model resnet50                 # candidate layers, the automatic one marked
  gradcam layers --model timm/vit_small_patch16_224 --grep norm1
  gradcam layers --model resnet50 --stages        # one layer per resolution stage
""",
    "models": "examples:\n  gradcam models\n",
    "methods": "examples:\n  gradcam methods\n",
}
