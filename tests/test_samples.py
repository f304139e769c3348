"""sample_data: the shipped pairs are what the generator draws, masks read back as labels, and the
class-frequency table is consistent with the dataset."""

import json

import numpy as np
import pytest

from segloss.train import data
from segloss.train.samples import SAMPLE_DIR, frequency_table, load_pair, read_manifest, write_samples
from segloss.uploads.loaders import load_mask


def test_written_samples_round_trip_to_the_generator_output(tmp_path):
    manifest = write_samples(tmp_path, seeds=(5,), image_size=48)
    assert set(manifest) == set(data.DATASETS)
    for name, info in data.DATASETS.items():
        entry = manifest[name]
        assert entry["class_names"] == list(info.class_names) and len(entry["samples"]) == 1
        image, labels = load_pair(name, 0, tmp_path)
        images, masks = data.make_batch(name, 1, 48, 5)
        np.testing.assert_array_equal(image, data.to_uint8_image(images[0]))
        np.testing.assert_array_equal(labels, masks[0].numpy())
        mask = load_mask(str(tmp_path / entry["samples"][0]["mask"]), num_classes=info.num_classes)
        np.testing.assert_array_equal(mask.labels, masks[0].numpy())  # the upload reader agrees
    assert json.loads((tmp_path / "datasets.json").read_text()) == manifest


def test_shipped_manifest_lists_existing_pairs_for_every_dataset():
    manifest = read_manifest()
    for name in data.DATASETS:
        assert len(manifest[name]["samples"]) >= 3
        for entry in manifest[name]["samples"]:
            assert (SAMPLE_DIR / entry["image"]).is_file() and (SAMPLE_DIR / entry["mask"]).is_file()


@pytest.mark.parametrize("name", sorted(data.DATASETS))
def test_frequency_table_columns_agree(name):
    table = frequency_table(name)
    shares = np.array(table["pixel share"])
    assert len(table["class"]) == data.DATASETS[name].num_classes
    assert shares.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(np.array(table["1 in N pixels"]) * shares, 1.0)
    np.testing.assert_allclose(np.array(table["vs. largest"]), shares.max() / shares)
    weights = np.array(table["median-frequency weight"])
    assert weights[np.argmin(shares)] == weights.max()  # the rarest class weighs most


def test_missing_manifest_and_bad_index_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m segloss samples"):
        read_manifest(tmp_path)
    write_samples(tmp_path, seeds=(1,), image_size=32)
    with pytest.raises(ValueError, match="out of range"):
        load_pair("street", 1, tmp_path)


def test_shipped_manifest_and_readme_name_the_modules_as_they_are():
    """The sample README's loading snippet imported ``segloss.model`` and the manifest named
    ``segloss.data`` (both moved under ``segloss.train`` with the package's layout): the snippet must
    run and the shipped manifest equal what ``python -m segloss samples`` writes."""
    import re
    import subprocess
    import sys

    readme = (SAMPLE_DIR / "README.md").read_text()
    (snippet,) = re.findall(r"```python\n(.*?)```", readme, re.S)
    out = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, cwd=SAMPLE_DIR.parent,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    for name in re.findall(r"`(segloss(?:\.\w+)+)", readme):  # every dotted name it mentions exists
        module, _, attr = name.partition("(")[0].rpartition(".")
        try:
            __import__(module)
            assert hasattr(sys.modules[module], attr), name
        except ModuleNotFoundError:
            __import__(name)
    shipped = read_manifest()
    for info in shipped.values():
        for key in ("generator", "frequencies_from"):
            qualified = re.match(r"[\w.]+", info[key]).group(0)
            module, _, attr = qualified.rpartition(".")
            assert hasattr(__import__(module, fromlist=[attr]), attr), info[key]
