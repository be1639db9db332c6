"""Draw the pictures of docs/expose.md into docs/images/ (needs matplotlib).

    python tools/draw_docs_images.py
"""

import pathlib

import nnexposed
from nnexposed.examples import digits

IMAGES = pathlib.Path(__file__).resolve().parent.parent / "docs" / "images"


def main():
    IMAGES.mkdir(parents=True, exist_ok=True)
    article = nnexposed.Network.from_sizes([3, 5, 5, 5, 2], seed=7)
    article.plot([0.5, -1.0, 2.0]).savefig(IMAGES / "article_network.png")
    network, images, labels = digits()
    network.plot(images[0]).savefig(IMAGES / "digits_network.png")
    for path in sorted(IMAGES.glob("*.png")):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
