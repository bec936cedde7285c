"""Each converter (and training) option is written once, in its option table.

The flags, YAML keys, README table and validation all come from the table; these tests
check that each of them agrees with it (in-process: no interpreter start-up).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from convert import cli
from convert.options import OPTIONS, byte_size, readme_table, validate
from convert.optiontable import Option, markdown_table
from convert.pipeline import ConvertOptions

REPO = Path(__file__).resolve().parents[1]
KEYED = [o for o in OPTIONS if o.key]
# A value each option accepts, as flag text and as its YAML value, and the field value it gives.
SAMPLES = {
    "mapping": ("m.tsv", "m.tsv", "m.tsv"),
    "header_regex": ("^(?P<class_id>\\d+)", "^(?P<class_id>\\d+)", "^(?P<class_id>\\d+)"),
    "tokenizer": ("char", "char", "char"),
    "max_length": ("64", 64, 64),
    "layout": ("compressed", "compressed", "compressed"),
    "compression": ("lzf", "lzf", "lzf"),
    "reads_per_shard": ("7", 7, 7),
    "jobs": ("3", 3, 3),
    "parallel": ("threads", "threads", "threads"),
    "scheduler": ("tcp://h:1", "tcp://h:1", "tcp://h:1"),
    "on_bad_record": ("error", "error", "error"),
    "max_record_bytes": ("2048", 2048, 2048),
    "min_written_fraction": ("0.25", 0.25, 0.25),
    "quarantine_max_bytes": ("2K", "2K", 2048),
}


def _yaml(tmp_path: Path, key: str, value: object) -> Path:
    import yaml

    section, leaf = key.split(".")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({section: {leaf: value}}))
    return path


def _fields(argv: list[str]) -> dict[str, object]:
    return cli._option_fields(cli.build_parser().parse_args(["r.fa", "--out", "o", *argv]))


def test_every_config_option_has_a_sample() -> None:
    assert sorted(SAMPLES) == sorted(o.field for o in KEYED)


@pytest.mark.parametrize("opt", KEYED, ids=lambda o: o.field)
def test_flag_parses_to_the_field(opt: Option) -> None:
    text, _, value = SAMPLES[opt.field]
    assert _fields([opt.flag, text]) == {opt.field: value}


@pytest.mark.parametrize("opt", KEYED, ids=lambda o: o.field)
def test_yaml_key_maps_to_the_same_field(tmp_path: Path, opt: Option) -> None:
    _, raw, value = SAMPLES[opt.field]
    assert _fields(["--config", str(_yaml(tmp_path, opt.key, raw))]) == {opt.field: value}


@pytest.mark.parametrize("opt", [o for o in KEYED if o.yaml_types == (str,)], ids=lambda o: o.field)
def test_yaml_wrong_type_names_file_and_key(tmp_path: Path, opt: Option) -> None:
    path = _yaml(tmp_path, opt.key, [1, 2])
    with pytest.raises(ValueError, match=rf"{path}: {opt.key}: expected"):
        cli.load_config(str(path))


def test_unknown_yaml_key_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "tokenizer.max_lenght", 64)
    with pytest.raises(ValueError, match=rf"{path}: unknown config keys \['tokenizer.max_lenght'\]"):
        cli.load_config(str(path))
    assert cli.main(["r.fa", "--out", str(tmp_path / "o"), "--config", str(path)]) == 2


def test_flag_overrides_yaml_and_both_are_given(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("tokenizer: {name: char, max_length: 32}\n")
    assert _fields(["--config", str(path), "--max-length", "auto"]) == {"tokenizer": "char", "max_length": "auto"}


def test_bad_config_size_names_the_file_and_key(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "convert.quarantine_max_bytes", "lots")
    with pytest.raises(ValueError, match=rf"^{path}: convert.quarantine_max_bytes: expected bytes"):
        _fields(["--config", str(path)])
    path = _yaml(tmp_path, "tokenizer.max_length", "many")
    with pytest.raises(ValueError, match=rf"^{path}: tokenizer.max_length: expected an integer or 'auto'"):
        _fields(["--config", str(path)])


def test_bad_flag_value_names_the_flag() -> None:
    with pytest.raises(ValueError, match=r"^--max-length must be an integer or 'auto', got 'many'"):
        _fields(["--max-length", "many"])


def test_readme_table_is_the_generated_table() -> None:
    readme = (REPO / "README.md").read_text()
    table = readme_table()
    assert readme.count(table) == 1, "README's Converter CLI table differs: regenerate it with convert.options.readme_table()"
    # Nothing but the table between its header and the next blank line.
    start = readme.index(table)
    assert readme[start + len(table)] == "\n"


def test_no_option_is_listed_twice() -> None:
    for attr in ("field", "flag", "key"):
        names = [getattr(o, attr) for o in OPTIONS if getattr(o, attr)]
        assert len(names) == len(set(names)), attr
    assert readme_table().count("`--mapping TSV`") == 1


def test_config_help_lists_every_key() -> None:
    text = " ".join(cli.build_parser().format_help().split())
    for o in KEYED:
        assert o.key in text


def test_table_and_convert_options_agree() -> None:
    fields = {f.name for f in dataclasses.fields(ConvertOptions)}
    internal = {"inputs", "out", "resume", "overwrite", "progress", "split", "given", "command"}
    assert {o.field for o in KEYED} == fields - internal
    assert {o.field for o in OPTIONS} >= {"inputs", "out", "resume", "overwrite", "split"}


@pytest.mark.parametrize("field", ["tokenizer", "max_length", "layout", "reads_per_shard", "parallel", "on_bad_record",
                                   "max_record_bytes", "min_written_fraction", "quarantine_max_bytes"])
def test_help_states_the_real_default(field: str) -> None:
    opt = next(o for o in OPTIONS if o.field == field)
    default = {f.name: f.default for f in dataclasses.fields(ConvertOptions)}[field]
    word = re.search(r"'?([\w.-]+)'? \(default\)", opt.help)
    stated = word.group(1) if word else re.search(r"default (\d[\d.]*(?: ?MiB|G)?)", opt.help).group(1)
    assert stated == str(default) or (isinstance(default, int) and byte_size(stated) == default), (stated, default)


@pytest.mark.parametrize(
    "field, value, flag",
    [
        ("max_length", 0, "--max-length"),
        ("max_length", 32768, "--max-length"),
        ("layout", "zip", "--layout"),
        ("compression", "zstd", "--compression"),
        ("reads_per_shard", 0, "--reads-per-shard"),
        ("parallel", "gpu", "--parallel"),
        ("on_bad_record", "warn", "--on-bad-record"),
        ("max_record_bytes", 10, "--max-record-bytes"),
        ("min_written_fraction", 1.5, "--min-written-fraction"),
        ("quarantine_max_bytes", -1, "--quarantine-max-bytes"),
    ],
)
def test_validation_errors_name_the_flag(field: str, value: object, flag: str) -> None:
    opts = ConvertOptions(inputs=["r.fa"], out="o", **{field: value})
    with pytest.raises(ValueError, match=f"^{flag}"):
        validate(opts)


def test_defaults_are_valid_and_compression_needs_its_layout() -> None:
    validate(ConvertOptions(inputs=["r.fa"], out="o"))
    with pytest.raises(ValueError, match="--compression gzip applies only to --layout compressed"):
        validate(ConvertOptions(inputs=["r.fa"], out="o", compression="gzip"))


def test_markdown_table_rows() -> None:
    table = markdown_table([Option("a", "--a", metavar="N", doc="x"), Option("b", "--b", doc=None),
                            Option("c", "--c", choices=("p", "q"), doc="y")])
    assert table == "| option | meaning |\n|---|---|\n| `--a N` | x |\n| `--c p\\|q` | y |\n"


# ----------------------------------------------------------------------------- training


def _train_options() -> tuple[Option, ...]:
    from train.cli import OPTIONS as TRAIN_OPTIONS

    return TRAIN_OPTIONS


def test_training_flags_are_listed_once_and_override_real_keys() -> None:
    from train.config import LoraConfig, ModelConfig, TrainConfig

    options = _train_options()
    for attr in ("field", "flag", "key"):
        names = [getattr(o, attr) for o in options if getattr(o, attr)]
        assert len(names) == len(set(names)), attr
    config = TrainConfig(model=ModelConfig(lora=LoraConfig())).to_dict()
    for o in options:
        if o.key:
            node = config
            for part in o.key.split("."):
                assert isinstance(node, dict) and part in node, o.key
                node = node[part]


@pytest.mark.parametrize("opt", [o for o in _train_options() if o.key and o.flag], ids=lambda o: o.field)
def test_training_flag_sets_its_key(opt: Option) -> None:
    from train.cli import build_parser, overrides

    text = [] if opt.action else [str(opt.choices[-1]) if opt.choices else ("3" if opt.type in (int, float) else "x")]
    given = overrides(build_parser().parse_args(["--config", "c.yaml", opt.flag, *text]))
    assert {k: v for k, v in given.items() if v is not None} == {
        opt.key: (opt.action == "store_true") if opt.action else (opt.type or str)(text[0])}


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("train.batch_size", 0, "train.batch_size: must be >= 1, got 0"),
        ("train.max_minutes", "9", "train.max_minutes: expected float, got '9'"),
        ("train.device", "tpu", "train.device: 'tpu'; choose auto, cpu or cuda"),
        ("optim.min_lr_ratio", 2.0, "optim.min_lr_ratio: must be <= 1, got 2.0"),
        ("model.arch", "gpt", "model.arch: 'gpt'; choose one of bert, dnabert2, llama"),
        ("model.lora", {"r": 0}, "model.lora.r: must be >= 1, got 0"),
        ("data.val", "", "data.val: expected a dataset directory path"),
    ],
)
def test_training_config_checks_name_the_key(key: str, value: object, message: str) -> None:
    from train.config import ConfigError, config_from_dict

    section, _, leaf = key.rpartition(".")
    with pytest.raises(ConfigError, match=re.escape(message)):
        config_from_dict({"model": {}, section: {leaf: value}} if section != "model" else {"model": {leaf: value}})
