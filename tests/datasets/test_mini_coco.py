"""The synthetic mini COCO generator: determinism, exact annotations, COCO compatibility, option checks, atomicity."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from shufflenet_det.datasets import mini_coco
from shufflenet_det.datasets.mini_coco import SHAPE_CLASSES, MiniCocoSpec, ensure, generate, read_spec
from tiny_mini_coco import load_script
from zygote import run_python

TINY = dict(num_train=6, num_val=4, image_width=112, image_height=96, min_objects=2, max_objects=4, min_size=14,
            max_size=30)


def tiny_spec(**kw) -> MiniCocoSpec:
    return MiniCocoSpec(**{**TINY, **kw})


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def dataset(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp('mini') / 'mini_coco', tiny_spec(classes=tuple(SHAPE_CLASSES)))


def test_layout(dataset: Path):
    assert sorted(p.name for p in dataset.iterdir()) == ['annotations', 'train2017', 'val2017']
    assert len(list((dataset / 'train2017').iterdir())) == 6
    assert len(list((dataset / 'val2017').iterdir())) == 4
    assert read_spec(dataset) == tiny_spec(classes=tuple(SHAPE_CLASSES))


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path, dataset: Path):
    spec = tiny_spec(classes=tuple(SHAPE_CLASSES))
    again = tree_bytes(generate(tmp_path / 'again', spec))
    assert again == tree_bytes(dataset)
    other = tree_bytes(generate(tmp_path / 'other', tiny_spec(classes=tuple(SHAPE_CLASSES), seed=1)))
    assert other['train2017/000000000001.png'] != again['train2017/000000000001.png']


def test_splits_are_independent_of_each_others_size():
    a = mini_coco.build_split(tiny_spec(num_train=3), 'val2017', None)
    b = mini_coco.build_split(tiny_spec(num_train=9), 'val2017', None)
    assert (a['images'], a['annotations']) == (b['images'], b['annotations'])
    px_a, _ = mini_coco.render_image(tiny_spec(num_train=3), 1, 2)
    px_b, _ = mini_coco.render_image(tiny_spec(num_train=9), 1, 2)
    np.testing.assert_array_equal(px_a, px_b)


@pytest.mark.parametrize('split', ['train2017', 'val2017'])
def test_annotations_are_exact(dataset: Path, split: str):
    spec = read_spec(dataset)
    data = json.loads((dataset / 'annotations' / f'instances_{split}.json').read_text())
    assert [c['name'] for c in data['categories']] == list(spec.classes)
    assert [c['id'] for c in data['categories']] == list(range(1, len(spec.classes) + 1))
    assert len({a['id'] for a in data['annotations']}) == len(data['annotations'])
    per_image: dict[int, list] = {im['id']: [] for im in data['images']}
    for ann in data['annotations']:
        per_image[ann['image_id']].append(ann)
    for im in data['images']:
        assert (im['width'], im['height']) == (spec.image_width, spec.image_height)
        anns = per_image[im['id']]
        assert spec.min_objects <= len(anns) <= spec.max_objects
        pixels = np.asarray(Image.open(dataset / split / im['file_name']).convert('RGB')).astype(int)
        boxes = []
        for ann in anns:
            x, y, w, h = ann['bbox']
            assert w > 0 and h > 0 and x >= 0 and y >= 0
            assert x + w <= spec.image_width and y + h <= spec.image_height
            assert max(w, h) <= spec.max_size and ann['iscrowd'] == 0
            mask = mask_utils.decode(ann['segmentation']).astype(bool)
            assert mask.sum() == ann['area'] > 0
            assert list(mask_utils.toBbox(ann['segmentation'])) == [x, y, w, h]  # box = tight bounds of the shape
            color = np.array(SHAPE_CLASSES[spec.classes[ann['category_id'] - 1]].color)
            # colour jitter (+-20) and pixel noise (sigma 5 at clutter 0.5) average out over the shape
            assert np.abs(pixels[mask].mean(0) - color).max() < 25
            boxes.append((x, y, x + w, y + h))
        for i, a in enumerate(boxes):  # objects never overlap, so every box and mask is fully visible
            for b in boxes[i + 1:]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def test_pycocotools_reads_it_and_scores_ground_truth_perfectly(dataset: Path):
    gt = COCO(str(dataset / 'annotations' / 'instances_val2017.json'))
    assert len(gt.getImgIds()) == 4 and len(gt.getCatIds()) == len(SHAPE_CLASSES)
    dets = [dict(image_id=a['image_id'], category_id=a['category_id'], bbox=a['bbox'], score=1.0)
            for a in gt.loadAnns(gt.getAnnIds())]
    evaluator = COCOeval(gt, gt.loadRes(dets), 'bbox')
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)  # each box scored against itself: IoU exactly 1


@pytest.mark.parametrize('kw, message', [
    (dict(num_train=0), 'num_train=0'),
    (dict(image_width=16), 'image_width=16'),
    (dict(min_objects=3, max_objects=2), 'max_objects=2'),
    (dict(min_size=40, max_size=30), 'max_size=30'),
    (dict(max_size=60), 'half the shorter image side'),
    (dict(min_objects=12, max_objects=12), 'do not fit'),
    (dict(max_aspect=0.5), 'max_aspect'),
    (dict(clutter=2.0), 'clutter'),
    (dict(seed=-1), 'seed'),
    (dict(classes=('circle', 'hexagon')), "['hexagon']"),
    (dict(classes=('circle', 'circle')), 'unique'),
    (dict(image_format='gif'), 'image_format'),
])
def test_bad_options(kw, message):
    with pytest.raises(ValueError, match=message.replace('[', r'\[').replace(']', r'\]')):
        tiny_spec(**kw)


def test_write_is_atomic(tmp_path: Path, monkeypatch):
    root = tmp_path / 'mini'

    def broken(spec, split, image_dir):
        if split == 'val2017':
            raise RuntimeError('disk full')
        return real(spec, split, image_dir)

    real = mini_coco.build_split
    monkeypatch.setattr(mini_coco, 'build_split', broken)
    with pytest.raises(RuntimeError, match='disk full'):
        generate(root, tiny_spec())
    assert list(tmp_path.iterdir()) == []  # neither the dataset nor a temporary folder is left behind
    monkeypatch.setattr(mini_coco, 'build_split', real)

    generate(root, tiny_spec())
    before = tree_bytes(root)
    monkeypatch.setattr(mini_coco, 'build_split', broken)
    with pytest.raises(RuntimeError):
        generate(root, tiny_spec(seed=5), overwrite=True)
    assert tree_bytes(root) == before  # a failed overwrite keeps the old dataset intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ['mini']
    with pytest.raises(FileExistsError, match='--overwrite'):
        generate(root, tiny_spec())


def test_ensure(tmp_path: Path):
    root = tmp_path / 'mini'
    assert ensure(root, tiny_spec()) is True
    assert ensure(root, tiny_spec()) is False  # same spec: reused
    with pytest.raises(FileExistsError, match=r"seed=0 \(this job needs 2\).*--overwrite"):
        ensure(root, tiny_spec(seed=2))  # another generated dataset is the user's data: kept unless asked
    assert read_spec(root) == tiny_spec()
    assert ensure(root, tiny_spec(seed=2), overwrite=True) is True and read_spec(root) == tiny_spec(seed=2)
    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'keep.txt').write_text('mine')
    with pytest.raises(FileExistsError, match='not a complete dataset'):
        ensure(foreign, tiny_spec())
    assert (foreign / 'keep.txt').read_text() == 'mine'


def test_cli(tmp_path: Path, capsys):
    out = tmp_path / 'cli'
    args = ['--out', str(out), '--num-train', '2', '--num-val', '1', '--image-size', '96x64', '--min-size', '12',
            '--max-size', '24', '--classes', 'ring', 'diamond', '--format', 'jpg']
    done = run_python(['tools/misc/make_mini_coco.py'] + args)
    assert done.returncode == 0, done.stderr
    assert read_spec(out) == MiniCocoSpec(num_train=2, num_val=1, image_width=96, image_height=64, min_size=12,
                                          max_size=24, classes=('ring', 'diamond'), image_format='jpg')
    assert Image.open(out / 'val2017' / '000000000001.jpg').size == (96, 64)

    tool = load_script('tools/misc/make_mini_coco.py')
    assert tool.main(args) == 1 and '--overwrite' in capsys.readouterr().err
    assert tool.main(['--out', str(tmp_path / 'x'), '--max-size', '500']) == 2
    assert 'max_size=500' in capsys.readouterr().err and not (tmp_path / 'x').exists()
    with pytest.raises(SystemExit):
        tool.main(['--image-size', '12by5'])
    assert 'not an image size' in capsys.readouterr().err
