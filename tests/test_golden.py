"""The compiler's output is byte-for-byte what tests/golden/emit.sha256 records, for every
bundled network in every emit mode (python, --standalone, --inference, --no-fuse, ir, json,
summary). A deliberate change regenerates the digests (`python tests/golden.py --update`) in
the commit that explains it; to see what changed, write the outputs before and after with
`python tests/golden.py --write DIR` and diff the folders."""
from __future__ import annotations

import pytest

import golden

RECORDED = golden.recorded()
CASES = [(spec, net, mode) for spec, net in golden.networks() for mode in golden.MODES]


def test_manifest_covers_every_bundled_network_and_mode():
    assert sorted(RECORDED) == sorted(golden.key(*c) for c in CASES)
    assert len(CASES) >= 7 * 40


@pytest.mark.parametrize("spec,network,mode", CASES, ids=[golden.key(*c) for c in CASES])
def test_output_is_unchanged(spec, network, mode):
    text = golden.output(spec, network, mode)
    assert golden.digest(text) == RECORDED[golden.key(spec, network, mode)], (
        f"`resdsl compile {spec} -n {network}` ({mode}) changed; see tests/golden.py")
