"""odp_airflow.local: the URLs, the demo summary (``python -m odp_airflow.local``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from odp_airflow.local.__main__ import main


def test_urls_mentions_login_and_ports(odp_home, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["urls"]) == 0
    out = capsys.readouterr().out
    assert "http://localhost:8080" in out and "admin / admin" in out
    assert "http://127.0.0.1:5000" in out and str(odp_home.home) in out


def test_demo_summary(odp_home, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline_lib import registry

    assert main(["demo-summary", "--model-name", "odp-demo"]) == 1
    model = tmp_path / "model"
    model.mkdir()
    (model / "model_algo_1-symbol.json").write_text(
        json.dumps({"nodes": [], "heads": []})
    )  # a (GluonCV-format) stand-in
    for name in ("model_algo_1-0000.params", "hyperparams.json", "class_map.json"):
        (model / name).write_text("{}")  # stand-ins: registration needs the files, not a network
    started = time.time() - 1
    info = registry.register_model(model, "odp-demo", metrics={"mAP": 0.4321})
    registry.promote_if_better("odp-demo", info["version"])
    capsys.readouterr()

    assert main(["demo-summary", "--model-name", "odp-demo", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["version"] == 1 and summary["mAP"] == pytest.approx(0.4321)
    assert summary["aliases"] == ["candidate", "champion"]

    assert main(["demo-summary", "--model-name", "odp-demo", "--since", str(started)]) == 0
    text = capsys.readouterr().out
    assert "0.4321" in text and "odp-demo" in text and "version 1" in text and "make ui" in text
    future = str(time.time() + 3600)
    assert main(["demo-summary", "--model-name", "odp-demo", "--since", future]) == 1


def test_wait_ready_prints_the_urls_once_services_answer(odp_home) -> None:
    """The `ready` process of `make ui`: silent while a service is down, banner once up."""
    import http.server
    import subprocess
    import sys
    import threading

    from servers import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}/health"
    proc = subprocess.Popen(  # noqa: S603  test-built argv, no shell
        [sys.executable, "-m", "odp_airflow.local", "wait-ready", url],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)
        assert proc.poll() is None  # still waiting: nothing answers yet
        server = http.server.HTTPServer(("127.0.0.1", port), http.server.BaseHTTPRequestHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("Ctrl-C" in x for x in lines):
            lines.append(proc.stdout.readline())
        assert any("Airflow UI" in x for x in lines) and any("Ctrl-C" in x for x in lines)
        assert proc.poll() is None  # stays up: honcho would stop the services if it exited
        server.shutdown()
    finally:
        proc.kill()
        proc.wait()
