"""Rows of the op table (see tests/opdb.py)."""
from tests.opdb import OpInfo, Sample, non_contiguous  # noqa: F401

OPS: list = []
