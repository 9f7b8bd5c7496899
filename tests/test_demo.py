"""The demo's data choice and the ImageNet-sample archive layout (no network)."""
import zipfile

import pytest

from mpq_gym.cli import demo
from mpq_gym.errors import MissingDataError
from mpq_gym.workloads.imagenet_sample import arrange_sample, download_imagenet_sample


def test_demo_uses_efficientnet_when_images_are_found():
    env_id, kwargs = demo.choose_env()
    assert env_id == demo.MAIN_ENV and kwargs["data_dir"].endswith("val")


def test_demo_falls_back_to_digits_with_a_notice(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MPQ_GYM_OFFLINE", "1")
    env_id, kwargs = demo.choose_env(str(tmp_path))  # an empty folder: no images, no download
    assert env_id == demo.FALLBACK_ENV and kwargs == {}
    assert "falling back to MixedPrecision-DigitsCNN-v0" in capsys.readouterr().out


def test_sample_archive_is_laid_out_as_an_image_folder(tmp_path):
    archive = tmp_path / "master.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("imagenet-sample-images-master/n01440764_tench.JPEG", b"jpeg-bytes")
        zf.writestr("imagenet-sample-images-master/n15075141_toilet_tissue.JPEG", b"jpeg-bytes")
        zf.writestr("imagenet-sample-images-master/README.md", b"readme")
    val = arrange_sample(archive, tmp_path / "sample")
    assert sorted(p.name for p in val.iterdir()) == ["n01440764", "n15075141"]
    assert (val / "n01440764" / "n01440764_tench.JPEG").read_bytes() == b"jpeg-bytes"


def test_a_wrong_archive_and_offline_mode_are_clear_errors(tmp_path, monkeypatch):
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("x/readme.txt", b"nothing")
    with pytest.raises(MissingDataError, match="not the ImageNet sample"):
        arrange_sample(archive, tmp_path / "sample")
    monkeypatch.setenv("MPQ_GYM_OFFLINE", "1")
    with pytest.raises(MissingDataError, match="downloads are off"):
        download_imagenet_sample(tmp_path / "none")
