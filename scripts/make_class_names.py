"""Writes the class-name files of keras_vit/labels/ from two published wheels, read as zip files
(nothing is imported or installed):

- ImageNet-1k and ImageNet-22k (fall11, 21,841 classes, the order of timm's `imagenet22k_synsets.txt`,
  which Swin's `ms_in22k` heads use): timm's `timm/data/_info/imagenet_synsets.txt`,
  `imagenet22k_synsets.txt` and `imagenet_synset_to_lemma.txt`;
- COCO for DETR (91 category ids, "N/A" for the ids COCO does not use; DETR's logits have one more, "no
  object", last): torchvision's `torchvision/models/_meta.py` `_COCO_CATEGORIES`, whose index 0
  ("__background__") is written "N/A" as DETR has no background class there.

    pip download timm==1.0.31 torchvision==0.28.0 --no-deps -d /tmp/wheels
    python scripts/make_class_names.py /tmp/wheels/timm-1.0.31-py3-none-any.whl \
        /tmp/wheels/torchvision-0.28.0-cp311-cp311-manylinux_2_28_x86_64.whl
"""

import ast
import gzip
import os
import sys
import zipfile

OUT = os.path.join(os.path.dirname(__file__), "..", "keras_vit", "labels")
INFO = "timm/data/_info/"


def _synset_file(timm_wheel, name, lemmas, source):
    with zipfile.ZipFile(timm_wheel) as wheel:
        synsets = wheel.read(INFO + name).decode().split()
    header = f"# synset<TAB>WordNet lemmas; line i (after this header) is class i. From {source}.\n"
    return header + "".join(f"{s}\t{lemmas[s]}\n" for s in synsets), len(synsets)


def main(timm_wheel, torchvision_wheel):
    timm_version = os.path.basename(timm_wheel).split("-")[1]
    with zipfile.ZipFile(timm_wheel) as wheel:
        lemmas = dict(line.split("\t", 1) for line in wheel.read(INFO + "imagenet_synset_to_lemma.txt").decode().splitlines())
    text, count = _synset_file(timm_wheel, "imagenet_synsets.txt", lemmas,
                               f"timm {timm_version} imagenet_synsets.txt + imagenet_synset_to_lemma.txt")
    assert count == 1000, count
    with open(os.path.join(OUT, "imagenet1k.txt"), "w") as f:
        f.write(text)
    text, count = _synset_file(timm_wheel, "imagenet22k_synsets.txt", lemmas,
                               f"timm {timm_version} imagenet22k_synsets.txt + imagenet_synset_to_lemma.txt")
    assert count == 21841, count
    # mtime=0: the same bytes every run.
    with gzip.GzipFile(os.path.join(OUT, "imagenet22k.txt.gz"), "wb", mtime=0) as f:
        f.write(text.encode())

    tv_version = os.path.basename(torchvision_wheel).split("-")[1]
    with zipfile.ZipFile(torchvision_wheel) as wheel:
        tree = ast.parse(wheel.read("torchvision/models/_meta.py").decode())
    categories = next(
        ast.literal_eval(node.value) for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_COCO_CATEGORIES"
    )
    assert len(categories) == 91 and categories[1] == "person" and categories[90] == "toothbrush", categories
    categories[0] = "N/A"
    with open(os.path.join(OUT, "coco91.txt"), "w") as f:
        f.write(f"# COCO category id<TAB>name; line i (after this header) is DETR's class i; N/A: an id COCO does not use. "
                f"From torchvision {tv_version} models/_meta.py _COCO_CATEGORIES.\n")
        f.write("".join(f"{i}\t{name}\n" for i, name in enumerate(categories)))


if __name__ == "__main__":
    main(*sys.argv[1:3])
