"""The tiny checkpoint fixture trains through the CLI and rebuilds without Lightning."""

from models.checkpoint import load_bundle


def test_tiny_checkpoint_loads(tiny_checkpoint):
    loaded = load_bundle(tiny_checkpoint)
    assert loaded.config.cell == "lstm"
    assert "B-fromloc.city_name" in loaded.slot_tags
