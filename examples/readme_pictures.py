"""Draw the README's pictures from scikit-image's "chelsea" saved as cat.jpg, with the commands the README
shows: the labelled figure of Grad-CAM, and every method in one figure (a small budget for the methods that
score many masked copies).

    python examples/readme_pictures.py docs
"""

import sys
import tempfile
from pathlib import Path

import skimage.data
from PIL import Image

from gradcam.cli import main as gradcam


def main(folder: str) -> None:
    out = Path(folder)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        Image.fromarray(skimage.data.chelsea()).save(work / "cat.jpg")
        assert gradcam(["explain", str(work / "cat.jpg"), "--out", str(work / "one"), "--save", "figure"]) == 0
        assert gradcam(["explain", str(work / "cat.jpg"), "--out", str(work / "all"), "--method", "all",
                        "--max-channels", "32", "--masks", "1000", "--save", "figure"]) == 0
        for made, name, width in (("one/cat.jpg.gradcam.figure.png", "chelsea_gradcam.jpg", 1200),
                                  ("all/cat.jpg.methods.figure.png", "chelsea_methods.jpg", 1000)):
            figure = Image.open(work / made).convert("RGB")  # a photo-like figure: JPEG, a tenth of the PNG
            figure.thumbnail((width, 10 * width), Image.Resampling.LANCZOS)
            figure.save(out / name, quality=88, optimize=True)
    print(f"wrote {out / 'chelsea_gradcam.jpg'} and {out / 'chelsea_methods.jpg'}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
