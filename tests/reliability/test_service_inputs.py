"""Bad input to the search service's commands and the in-memory API: one line each
(docs/errors.md rows 40-46; the HTTP API's 4xx answers are in tests/serve/test_app.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import attnreid
from attnreid.cli.main import main
from attnreid.errors import ConfigError
from tests.reliability.helpers import cli_error
from tests.retrieval.helpers import fake_checkpoint


@pytest.fixture(scope="module")
def indexed(tiny_synth, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("svc")
    ckpt = fake_checkpoint(tmp / "m.ckpt", tiny_synth)
    index = tmp / "g.index"
    argv = ["index", "build", "--checkpoint", ckpt, "--folder", tiny_synth / "bounding_box_test"]
    assert main([str(a) for a in (*argv, "-o", index)]) == 0
    return tmp, ckpt, index, next((tiny_synth / "query").iterdir())


def test_calibration_file_that_is_not_thresholds(capsys, indexed):
    tmp, _, index, query = indexed
    junk = tmp / "junk.json"
    junk.write_text("not json")
    argv = ["search", "--index", index, "--image", query, "--calibration", junk]
    assert cli_error(capsys, *argv) == (
        f"calibration file {junk} is not readable thresholds (a JSON file written by "
        "attnreid calibrate)"
    )


def test_false_match_rate_that_was_not_calibrated(capsys, indexed):
    tmp, _, index, query = indexed
    cal = tmp / "cal.json"
    cal.write_text(json.dumps({"metric": "euclidean", "thresholds": {"0.01": 0.5, "0.1": 0.9}}))
    argv = ["search", "--index", index, "--image", query, "--calibration", cal, "--fmr", "0.05"]
    expected = "no calibrated threshold for FMR 0.05 (calibrated: 0.01, 0.1)"
    assert cli_error(capsys, *argv) == expected
    assert main([str(a) for a in (*argv[:-1], "0.01")]) == 0
    assert "match at FMR 0.01 (distance <= 0.5), possible at FMR 0.1" in capsys.readouterr().out


def test_serve_port_out_of_range(capsys, indexed):
    _, _, index, _ = indexed
    assert cli_error(capsys, "serve", "--index", index, "--port", "70000") == (
        "--port must be between 0 and 65535, got 70000"
    )


def test_int8_export_with_no_quantisation_crops(capsys, indexed, tmp_path):
    _, ckpt, _, _ = indexed
    out = tmp_path / "q.onnx"
    argv = ["export", "onnx", "--checkpoint", ckpt, "-o", out, "--int8"]
    expected = "--quantisation-crops must be a positive integer, got 0"
    assert cli_error(capsys, *argv, "--quantisation-crops", "0") == expected
    assert not out.exists()
    # the old name still works, with a warning, and is checked the same way
    assert main([str(a) for a in (*argv, "--calibration-crops", "0")]) == 2
    err = capsys.readouterr().err
    assert "warning: --calibration-crops is now --quantisation-crops" in err
    assert [ln for ln in err.splitlines() if ln.startswith("error: ")] == [f"error: {expected}"]
    assert not out.exists()


def test_in_memory_crops_of_the_wrong_form(indexed):
    _, ckpt, _, _ = indexed
    extractor = attnreid.load(ckpt)
    with pytest.raises(ConfigError, match=r"^a numpy crop must be \(H, W, 3\) uint8, got shape "
                       r"\(64, 32\) dtype uint8$"):  # fmt: skip
        extractor([np.zeros((64, 32), np.uint8)])
    with pytest.raises(ConfigError, match=r"^a numpy crop must be .* dtype float64$"):
        extractor([np.zeros((64, 32, 3))])
    with pytest.raises(ConfigError, match=r"^a tensor crop must be \(3, H, W\), got \(64, 32, 3"):
        extractor([torch.zeros(64, 32, 3)])
    with pytest.raises(ConfigError, match=r"^channels must be one of"):
        extractor([np.zeros((64, 32, 3), np.uint8)], channels="bgr")


def test_serve_threads_must_be_positive(capsys, indexed):
    _, _, index, _ = indexed
    assert cli_error(capsys, "serve", "--index", index, "--threads", "0") == (
        "--threads must be a positive integer, got 0"
    )


def test_served_connections_have_tcp_nodelay():
    """asyncio (under uvicorn) sets TCP_NODELAY only on connections of an IPPROTO_TCP socket;
    without it each keep-alive answer waits ~40 ms for a delayed ACK."""
    import asyncio
    import socket

    from attnreid.cli.serve import listening_socket

    async def accept_one() -> int:
        listener = listening_socket("127.0.0.1", 0)
        seen: asyncio.Future = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        _, writer = await asyncio.open_connection(*listener.getsockname())
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(accept_one()) != 0
