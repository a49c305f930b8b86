"""Makes keras_vit/data/digits.npz, the embedded default dataset, from scikit-learn's digits.

scikit-learn's digits are 1,797 real handwritten digits (8x8 pixels, 16 grey levels, from the UCI
"Optical Recognition of Handwritten Digits" set). This script stores them once, as uint8 pixels in
[0, 255], already split train / validation / test (stratified by class, fixed seed), so that the
package needs no download and every run sees the same split.

Run from the repository root (needs scikit-learn):

    python scripts/make_digits.py
"""

import os

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SEED = 0
TEST_FRACTION = 0.2
VALIDATION_FRACTION = 0.1
OUTPUT = os.path.join(os.path.dirname(__file__), "..", "keras_vit", "data", "digits.npz")


def main():
    digits = load_digits()
    # 0..16 grey levels -> 0..255, the range the models' preprocessing expects.
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.uint8)
    indices = np.arange(len(labels))
    rest, test = train_test_split(indices, test_size=TEST_FRACTION, stratify=labels, random_state=SEED)
    train, validation = train_test_split(
        rest, test_size=VALIDATION_FRACTION / (1.0 - TEST_FRACTION), stratify=labels[rest], random_state=SEED
    )
    arrays = {}
    for split, index in (("train", train), ("validation", validation), ("test", test)):
        index = np.sort(index)
        arrays[f"{split}_images"] = images[index]
        arrays[f"{split}_labels"] = labels[index]
        arrays[f"{split}_indices"] = index.astype(np.int16)  # rows of sklearn.datasets.load_digits()
        print(f"{split}: {len(index)} images")
    np.savez_compressed(OUTPUT, **arrays)
    print("wrote", os.path.normpath(OUTPUT), os.path.getsize(OUTPUT), "bytes")


if __name__ == "__main__":
    main()
