"""What the custos client prints, and what its --help tells a person."""

from __future__ import annotations

import argparse
import json

import pytest

from agent import policy
from agent.cmd import client, output
from rpcapi import CustosAPI


def test_json_is_the_answer_itself():
    answer = {"uuid": "u1", "ephemeral": False, "nested": {"a": [1]}}

    assert json.loads(output.render(answer, "json")) == answer


def test_table_of_a_mapping_has_one_row_per_field():
    text = output.render({"version": "1.1", "database": "ok"}, "table")

    lines = text.splitlines()
    assert "| Field" in lines[1] and "Value" in lines[1]
    assert any("database" in line and "ok" in line for line in lines)
    assert any("version" in line and "1.1" in line for line in lines)


def test_table_of_a_list_has_a_column_per_field():
    rows = [{"uuid": "a", "usage_type": "ceph"}, {"uuid": "b", "usage_type": "tls"}]

    lines = output.render(rows, "table").splitlines()

    assert lines[1].split("|")[1:3] == [" usage_type ", " uuid "]
    assert "ceph" in lines[3] and "a" in lines[3]
    assert "tls" in lines[4] and "b" in lines[4]


def test_value_prints_bare_values_for_scripts():
    assert output.render("0f8e...", "value") == "0f8e..."
    assert output.render([{"uuid": "a", "usage_type": "ceph"}], "value") == "ceph a"
    assert output.render(None, "value") == ""
    assert output.render(None, "table") == ""


def test_a_terminal_gets_a_table_and_a_pipe_gets_json():
    assert output.default_format(is_terminal=True) == "table"
    assert output.default_format(is_terminal=False) == "json"


def _leaf_parsers(parser: argparse.ArgumentParser, path=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _leaf_parsers(sub, (*path, name))
            return
    yield path, parser


def test_every_command_names_the_policy_rule_it_must_pass():
    leaves = list(_leaf_parsers(client.build_parser()))
    known = set(policy.METHOD_RULES)

    assert len(leaves) >= 20
    for path, parser in leaves:
        method = parser.get_default("method")
        assert method in known, path
        assert hasattr(CustosAPI, method), path
        assert f"Policy: custos:{method}" in parser.format_help(), path


@pytest.mark.parametrize("argv", [["secret", "define", "x.xml"],
                                  ["secret", "define", "--file", "x.xml"]])
def test_secret_define_takes_its_file_as_virsh_does(argv):
    args = client.build_parser().parse_args(argv)

    assert (args.path or args.file) == "x.xml"
