"""Write the real photos that ship with scikit-image and matplotlib into a folder (for the demo).

    python examples/sample_photos.py demo/photos
"""

import sys
from pathlib import Path

from matplotlib import cbook
from PIL import Image


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    import skimage.data

    for name in ("chelsea", "coffee", "rocket", "astronaut"):
        Image.fromarray(getattr(skimage.data, name)()).save(out / f"{name}.jpg", quality=92)
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        Image.open(f).convert("RGB").save(out / "grace_hopper.jpg", quality=92)
    print(f"sample photos in {out}/")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo/photos")
