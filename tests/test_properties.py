"""Property-based tests: argument parsing and checkpoint loading end in a value or a clear error, never a crash."""

import argparse
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robustbench_dc.cli import parse_eps_list, parse_fraction, parse_n
from robustbench_dc.data import dataset_info
from robustbench_dc.errors import UserError
from robustbench_dc.external import load_external
from tests.thirdparty import SmallNet

INFO = dataset_info("digits")


@given(st.text(max_size=40))
def test_number_arguments_parse_or_say_why(text):
    for parse in (parse_fraction, parse_eps_list, parse_n):
        try:
            value = parse(text)
        except argparse.ArgumentTypeError:
            continue
        values = value if isinstance(value, list) else [value]
        assert all(v is None or math.isfinite(v) for v in values)
        if parse is parse_eps_list:
            assert all(0 <= v <= 1 for v in values)


@pytest.fixture(scope="module")
def state_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("sd") / "small.pt"
    torch.manual_seed(0)
    torch.save(SmallNet().state_dict(), path)
    return path.read_bytes()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cut=st.integers(min_value=0, max_value=10_000),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
    suffix=st.sampled_from([".pt", ".safetensors"]),
)
def test_mutated_checkpoints_fail_clearly(state_bytes, tmp_path, cut, flips, suffix):
    data = bytearray(state_bytes[: max(1, len(state_bytes) - cut % len(state_bytes))])
    for pos, value in flips:
        data[pos % len(data)] = value
    path = tmp_path / f"mutated{suffix}"
    path.write_bytes(bytes(data))
    try:
        load_external(path, INFO, factory="tests.thirdparty:build")
    except UserError:
        pass  # CheckpointError is a UserError: one line, exit 2
