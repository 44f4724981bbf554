"""The daemon's command line must not pull in torch (hundreds of MB, seconds of start-up)."""

import subprocess
import sys


def test_cli_and_daemon_do_not_import_torch():
    code = (
        "import sys, streamwatch.cli as c, streamwatch.daemon; c.build_parser(); "
        "from streamwatch.model import runtime, loader; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_variant_names_match_network():
    import pytest

    pytest.importorskip("torch")
    import argparse

    from streamwatch.model.network import VARIANTS
    from streamwatch.train import commands

    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    train = parser.parse_args(["train", "--data", "x", "--out", "y", "--variant", VARIANTS[-1]])
    assert train.variant == VARIANTS[-1]
