"""The generated scenario reference is current and complete; every CLI argument has help; --version works."""
import argparse
import difflib
from pathlib import Path

import pytest

import sim
from sim import arrivals, batching, cost, docgen, sizes
from sim.cli import _parser, main

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "scenario-reference.md"


@pytest.fixture(scope="module")
def generated():
    return docgen.render()


def test_reference_is_up_to_date(generated):
    assert DOC.is_file(), f"{DOC.relative_to(ROOT)} is missing: run `{docgen.WRITE_COMMAND}`"
    current = DOC.read_text(encoding="utf-8")
    if current != generated:
        diff = list(difflib.unified_diff(current.splitlines(), generated.splitlines(), "committed", "generated", lineterm=""))
        pytest.fail(f"{DOC.relative_to(ROOT)} is stale (the scenario models changed): run `{docgen.WRITE_COMMAND}` "
                    "and commit the result. First differences:\n" + "\n".join(diff[:30]), pytrace=False)


def test_reference_says_it_is_generated(generated):
    head = "\n".join(generated.splitlines()[:8])
    assert "generated" in head.lower() and docgen.WRITE_COMMAND in head


@pytest.mark.parametrize("registry", [arrivals.REGISTRY, batching.REGISTRY, cost.REGISTRY], ids=lambda r: r.tag)
def test_every_registered_name_is_documented(generated, registry):
    for name in registry.names():
        assert f"### `{registry.tag}: {name}`" in generated, f"{registry.what} {name!r} has no section"
        assert f"| `{name}` | selects this {registry.what} |" in generated


def test_every_model_and_field_is_documented(generated):
    classes = [cls for sec in docgen.sections() for cls in sec.members]
    for cls in (sim.Scenario, sim.Workload, sim.Server, sim.Slo, sim.Outputs, cost.LognormalNoise, cost.GpuSpec,
                sizes.FixedTokens, sizes.UniformTokens, sizes.LognormalTokens, sizes.EmpiricalTokens):
        assert cls in classes, f"{cls.__name__} is not documented"
    for sec in docgen.sections():
        for cls in sec.members:
            for name, info in cls.model_fields.items():
                key = info.validation_alias if isinstance(info.validation_alias, str) else name  # as users write it
                assert f"| `{docgen._join(sec.paths[0], key)}` |" in generated, f"{cls.__name__}.{name} has no row"


def test_rows_show_defaults_ranges_and_choices(generated):
    assert "| `seed` | int | `0` | 0 ≤ x < 9223372036854775808 |" in generated
    assert "| `name` | str | *required* | 1 ≤ length ≤ 200 |" in generated
    assert "| `server.replicas` | int | `1` | 1 ≤ x ≤ 100000 | identical replicas (not with groups) |" in generated
    assert "| `server.batching` | mapping with `policy`" in generated and "`{policy: dynamic}`" in generated
    assert "| `workload.arrival.rate_rps` | float | *required* | 1e-6 ≤ x ≤ 1e9 |" in generated
    assert "one of `decode_first`, `prefill_first`" in generated
    assert "| `cost_model.noise.cv` | float | `null` | 0 < x ≤ 10 |" in generated


def test_check_mode(tmp_path, capsys):
    good = tmp_path / "ref.md"
    assert docgen.main(["--write", "--path", str(good)]) == 0
    assert docgen.main(["--check", "--path", str(good)]) == 0
    good.write_text(good.read_text(encoding="utf-8") + "edited\n", encoding="utf-8")
    assert docgen.main(["--check", "--path", str(good)]) == 1
    assert docgen.WRITE_COMMAND in capsys.readouterr().err
    assert docgen.main(["--check", "--path", str(tmp_path / "absent.md")]) == 1


def test_missing_descriptions_are_listed(capsys):
    rows = docgen.missing_descriptions()
    assert all(file.endswith(".py") and cls and field for file, cls, field in rows)
    assert docgen.main(["--missing"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(rows)


def _parsers(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_every_cli_argument_has_help():
    missing = []
    for parser in _parsers(_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            name = "/".join(action.option_strings) or action.dest
            if not (action.help or "").strip():
                missing.append(f"{parser.prog} {name}")
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{parser.prog} {a.dest}" for a in action._choices_actions if not (a.help or "").strip()]
    assert not missing, f"arguments without help text: {', '.join(missing)}"


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"servesim {sim.__version__}"
