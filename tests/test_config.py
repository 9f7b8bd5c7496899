import json

import pytest

from mpq_gym.config import FP32, Candidate, config_to_json, parse_candidate, parse_config
from mpq_gym.errors import ConfigError

LAYERS = ["a", "b", "c"]


def test_parse_candidate_forms():
    assert parse_candidate("W4A8") == Candidate(4, 8)
    assert parse_candidate("w8a16") == Candidate(8, 16)
    assert parse_candidate("fp32") == FP32
    assert str(Candidate(6, 8)) == "W6A8"


@pytest.mark.parametrize("text", ["W1A8", "W8A9", "W64A8", "8x8", "W8", ""])
def test_bad_candidates_raise(text):
    with pytest.raises(ConfigError):
        parse_candidate(text)


def test_uniform_and_fp32_specs():
    assert parse_config("uniform:W4A8", LAYERS) == {n: Candidate(4, 8) for n in LAYERS}
    assert parse_config("fp32", LAYERS) == {n: FP32 for n in LAYERS}


def test_json_file_roundtrip_and_default(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"a": [4, 8], "*": "W8A8"}))
    config = parse_config(str(path), LAYERS)
    assert config == {"a": Candidate(4, 8), "b": Candidate(8, 8), "c": Candidate(8, 8)}
    path.write_text(json.dumps(config_to_json(config)))
    assert parse_config(str(path), LAYERS) == config


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"a": [4, 8]}', "unset"),
    ('{"a": [4, 8], "b": [8, 8], "c": [8, 8], "zzz": [8, 8]}', "does not have"),
    ('{"*": [8, 9]}', "unsupported activation bit-width"),
    ('{"*": [8]}', r"expected \[w_bits, a_bits\]"),
])
def test_malformed_config_files(tmp_path, content, message):
    path = tmp_path / "cfg.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        parse_config(str(path), LAYERS)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="neither"):
        parse_config("/nonexistent/cfg.json", LAYERS)
