"""Decoding cells and applying deltas to YAML configs."""
import pytest

from runner.core import cells
from runner.core.cells import KEEP_DEFAULT, CellError, decode
from runner.rowspec import config as cfg


@pytest.mark.parametrize("text,value", [
    ("12", 12), ("-3", -3), ("007", 7), ("0.5", 0.5), ("1e-3", 1e-3), (".5", 0.5), ("2E5", 2e5),
    ("true", True), ("TRUE", True), ("False", False), ("None", None), ("null", None),
    ("[a b 3]", ["a", "b", 3]), ("[]", []), ("[[1 2] [3]]", [[1, 2], [3]]), ("[1.5 true None]", [1.5, True, None]),
    ("'007'", "007"), ('"1e-3"', "1e-3"), ("EMPTY_STRING", ""), ("hello world", "hello world"),
    ("./path/to/file.yaml", "./path/to/file.yaml"), ("  42  ", 42), ("1.0.0", "1.0.0"),
    ("$(touch /tmp/x)", "$(touch /tmp/x)"), ("__import__('os')", "__import__('os')"),
])
def test_decode(text, value):
    decoded = decode(text)
    assert decoded == value and type(decoded) is type(value)


@pytest.mark.parametrize("text", ["", "   ", "Default", "default"])
def test_keep_default(text):
    assert decode(text) is KEEP_DEFAULT


@pytest.mark.parametrize("text", ["[1 2", "1 2]", "[1 [2]", "'abc"])
def test_undecodable(text):
    with pytest.raises(CellError):
        decode(text)


# stnd runs a row when `is_number(cell) and int(cell) != 0`; pandas and spreadsheets also write
# 1.0 and TRUE, which stnd's int() cannot read, and which mean the same to a person
@pytest.mark.parametrize("text,value", [("1", True), (" 0 ", False), ("", False), ("2", True), ("-1", True),
                                        ("1.0", True), ("0.0", False), ("TRUE", True), ("true", True),
                                        ("False", False), ("007", True), ("000", False)])
def test_whether_to_run(text, value):
    assert cells.parse_whether_to_run(text) is value


@pytest.mark.parametrize("text", ["yes", "1.5", "x", "[1]", "on"])
def test_whether_to_run_is_strict(text):
    with pytest.raises(CellError, match="whether_to_run must be a whole number"):
        cells.parse_whether_to_run(text)


def test_placeholders():
    row = {"name": "exp__ROW__", "lr": "0.1"}
    assert cells.fill_placeholders("run___ROW___lr___COL:lr__", 7, row) == "run_7_lr_0.1"
    assert cells.fill_placeholders("__COL:name__", 3, row) == "exp3"
    with pytest.raises(CellError, match="names no column"):
        cells.fill_placeholders("__COL:missing__", 1, row)


DEFAULT = {"a": {"b": {"c": 1}}, "lst": [1, {"k": 2}], "name": "<placeholder>"}


def test_apply_deltas_nested_and_list_index():
    out = cfg.apply_deltas(DEFAULT, [("a/b/c", 5, False), ("lst/1/k", 9, False), ("name", "x", False)])
    assert out == {"a": {"b": {"c": 5}}, "lst": [1, {"k": 9}], "name": "x"}
    assert DEFAULT["a"]["b"]["c"] == 1           # the default is not mutated


def test_unknown_key_with_hint():
    with pytest.raises(cfg.ConfigError, match=r"unknown config key 'a/b/cc'.*did you mean 'c'\?"):
        cfg.apply_deltas(DEFAULT, [("a/b/cc", 5, False)])


def test_empty_cell_never_fails_even_for_a_key_this_config_lacks():
    assert cfg.apply_deltas(DEFAULT, [("nope", KEEP_DEFAULT, False)]) == DEFAULT


def test_delta_plus_creates_keys():
    out = cfg.apply_deltas(DEFAULT, [("new/deep/key", "v", True)])
    assert out["new"] == {"deep": {"key": "v"}}


def test_placeholders_left():
    assert cfg.unfilled_placeholders(DEFAULT) == ["name"]
    assert cfg.unfilled_placeholders({"a": "<not> a placeholder"}) == []


def test_diff():
    new = cfg.apply_deltas(DEFAULT, [("a/b/c", 2, False), ("x", 1, True)])
    assert cfg.diff(DEFAULT, new) == [("a/b/c", 1, 2), ("x", None, 1)]


def test_yaml_error_names_file_and_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("a: 1\nb: [unclosed\n")
    with pytest.raises(cfg.ConfigError, match=r"YAML error in .*bad.yaml \(line"):
        cfg.load_yaml(str(p))


@pytest.mark.parametrize("path,value,expected", [
    ("train/lr", "fast", "train/lr = 'fast': expected a number (the default is 0.1)"),
    ("train/epochs", "ten", "train/epochs = 'ten': expected a number (the default is 10)"),
    ("train/lr", "0,1", "(a decimal comma? write 0.1)"),
    ("train/flag", 1, "train/flag = 1: expected true or false"),
    ("train/tags", 3, "expected a list like [a b c]"),
    ("train/sub", "x", "expected a mapping"),
    ("train/tags/0", "a", None),            # list items: their own default's kind (1 is a number)
])
def test_delta_values_must_match_the_defaults_kind(path, value, expected):
    default = {"train": {"lr": 0.1, "epochs": 10, "flag": True, "tags": [1, 2], "sub": {"a": 1}}}
    with pytest.raises(cfg.ConfigError) as err:
        cfg.apply_deltas(default, [(path, value, False)])
    if expected:
        assert expected in str(err.value)


@pytest.mark.parametrize("path,value", [
    ("train/lr", 3), ("train/epochs", 0.5), ("train/lr", None), ("train/name", 7), ("train/name", True),
    ("train/opt", "adam"), ("train/opt", [1]), ("fill", 5), ("train/new", "x"), ("train/sets", ["in_val"]),
])
def test_compatible_delta_values_are_taken(path, value):
    default = {"train": {"lr": 0.1, "epochs": 10, "name": "x", "opt": None, "sets": "all"}, "fill": "<placeholder>"}
    node = cfg.apply_deltas(default, [(path, value, path == "train/new")])
    for part in path.split("/"):
        node = node[part]
    assert node == value and type(node) is type(value)


@pytest.mark.parametrize("path,value,quoted,runs", [
    ("initialization_type", "zeros", False, True),      # stnd's own test sheet: a code, named
    ("train/mode", "fast", False, True),
    ("train/lr", "fast", False, False),                  # a float is never a code
    ("train/epochs", "ten", False, False),               # not a code
    ("init_type", "ten", False, False),                  # a number mistyped, even for a code
    ("init_type", "0,5", False, False),
    ("init_type", "10k", False, False),
    ("train/epochs", "all", True, True),                 # quoted: the sheet says it is meant
])
def test_text_for_an_integer_code_runs_with_a_warning(path, value, quoted, runs):
    default = {"initialization_type": 1, "init_type": 0, "train": {"lr": 0.1, "epochs": 10, "mode": 2}}
    warnings: list = []
    if not runs:
        with pytest.raises(cfg.ConfigError, match="expected a number"):
            cfg.apply_deltas(default, [(path, value, False, quoted)], warnings)
        return
    node = cfg.apply_deltas(default, [(path, value, False, quoted)], warnings)
    for part in path.split("/"):
        node = node[part]
    assert node == value and len(warnings) == 1 and "as stnd runs it" in warnings[0]
