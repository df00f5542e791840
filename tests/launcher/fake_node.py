"""A stand-in for `garfield node` that speaks the launcher's side of the contract and nothing else.

It reads the GARFIELD_* environment, serves `/status` on GARFIELD_METRICS_PORT and advances a step
counter; correct servers (peers) report phase "done" at the last step and exit 0, workers run until
stopped. FAKE_NODE (JSON {replica name: behaviour}) makes chosen replicas misbehave:
"crash" exits 3 at once, "crash-once" exits 3 at its first start only (it leaves a mark in the
folder FAKE_NODE_MARKS), "ignore-term" ignores SIGTERM, "grandchild" starts a sleeping child of its
own, "hang" never finishes, "linger" stays up after "done".
FAKE_NODE_PACE=read makes a node advance one step only after its `/status` was read at the current
step, so a test sees every step on the display whatever the machine's speed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

role = os.environ["GARFIELD_ROLE"]
index = int(os.environ["GARFIELD_INDEX"])
name = f"{os.environ['GARFIELD_JOB_NAME']}-{role}-{index}"
spec = json.loads(os.environ["GARFIELD_SPEC"])
total = int(spec["training"]["steps"])
byzantine = "GARFIELD_ATTACK" in os.environ
behaviour = json.loads(os.environ.get("FAKE_NODE", "{}")).get(name, "")
state = {"step": 0, "phase": "running"}
paced_by_reads = os.environ.get("FAKE_NODE_PACE") == "read"
read_at_step = threading.Event()  # set when /status was served at the current step (FAKE_NODE_PACE=read)

if behaviour == "crash":
    print(f"{name}: simulated crash", flush=True)
    sys.exit(3)
if behaviour == "crash-once":
    from pathlib import Path

    mark = Path(os.environ["FAKE_NODE_MARKS"]) / name
    if not mark.exists():
        mark.touch()
        print(f"{name}: simulated crash (first start)", flush=True)
        sys.exit(3)
    print(f"{name}: started again", flush=True)
if behaviour == "fail":  # the real node's way: a JSON error line, then teardown noise
    print(json.dumps({"level": "error", "msg": "failed", "exception": "Traceback ...\nQuorumError: 4 of 7 left"}), flush=True)
    print("Traceback (most recent call last):\nasyncio.exceptions.CancelledError", flush=True)
    sys.exit(1)
if behaviour == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if behaviour == "grandchild":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(f"grandchild {child.pid}", flush=True)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = json.dumps({
            "job": spec.get("job", ""), "role": role, "index": index, "byzantine": byzantine,
            "step": state["step"], "total_steps": total, "loss": 1.0 / (1 + state["step"]),
            "accuracy": 0.9 + index / 1000, "steps_per_second": 50.0,
            "rejected": {"stale": index}, "phase": state["phase"],
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)
        read_at_step.set()

    def log_message(self, *args: object) -> None:
        pass


httpd = ThreadingHTTPServer(("127.0.0.1", int(os.environ["GARFIELD_METRICS_PORT"])), Handler)
threading.Thread(target=httpd.serve_forever, daemon=True).start()
print(f"{name} listening", flush=True)
holds_model = role in ("server", "peer") and not byzantine
while True:
    time.sleep(0.02)
    if state["step"] < total and behaviour != "hang":
        if paced_by_reads:
            read_at_step.wait()
            read_at_step.clear()
        state["step"] += 1
    elif holds_model and behaviour != "hang":
        if state["phase"] != "done":
            # the real node's structured "done" line: the launcher reads the final accuracy from it
            print(json.dumps({"msg": "done", "step": total, "accuracy": 0.95 + index / 1000, "rejected": {"stale": index}}),
                  flush=True)
        state["phase"] = "done"
        if behaviour != "linger":
            time.sleep(0.05)
            sys.exit(0)
