"""Progress lines a log can read: run in a subprocess whose stderr is a pipe (or a terminal)."""

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE = re.compile(r"^(?P<label>.+) (?P<done>\d+)/(?P<total>\d+)(?: (?P<text>.*))?, "
                  r"(?P<seconds>\d+) s$")


def run(code, stderr=subprocess.PIPE):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], stderr=stderr,
                          stdout=subprocess.PIPE, env=env, timeout=120)


def test_one_line_per_stage_on_a_pipe():
    proc = run("""
        from cfprune.progress import Progress
        with Progress("report: tuning ALS", total=3, unit="model") as p:
            for i in range(3):
                p.step(f"(factors={32 * 2 ** i}) recall@20 0.{i}")
        """)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 3
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert [m["done"] for m in parsed] == ["1", "2", "3"]
    assert {m["total"] for m in parsed} == {"3"}
    assert {m["label"] for m in parsed} == {"report: tuning ALS"}
    assert parsed[2]["text"] == "(factors=128) recall@20 0.2"
    assert "\r" not in proc.stderr.decode()


def test_min_interval_keeps_short_steps_quiet_and_long_ones_readable():
    proc = run("""
        import time
        from cfprune.progress import Progress
        with Progress("evaluate", total=100, min_interval=60) as p:
            for i in range(100):
                p.step()
        with Progress("slow", total=4, min_interval=0.2) as p:
            for i in range(4):
                time.sleep(0.25)
                p.step(f"block {i}")
        """)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.decode().splitlines()
    assert lines and all(line.startswith("slow ") for line in lines), lines
    assert LINE.match(lines[-1])["done"] == "4"
    assert 2 <= len(lines) <= 4


def test_silent_when_asked():
    proc = run("""
        from cfprune.progress import Progress
        with Progress("quiet", total=2, show=False) as p:
            p.step("a"); p.step("b"); p.line("c")
        """)
    assert proc.returncode == 0 and proc.stderr == b""


@pytest.mark.skipif(not hasattr(pty, "openpty"), reason="needs a pseudo-terminal")
def test_a_terminal_gets_a_bar_not_lines():
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        proc = run("""
            from cfprune.progress import Progress
            with Progress("report: sweep", total=2, unit="spec") as p:
                p.step("fp16"); p.step("int8")
            """, stderr=follower)
        os.close(follower)
        follower = None
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower is not None:
            os.close(follower)
        os.close(leader)
    text = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert "\r" in text and "report: sweep" in text and "2/2" in text
    assert not any(LINE.match(line) for line in text.replace("\r", "\n").splitlines())


def test_training_and_evaluation_log_lines_off_a_terminal():
    proc = run("""
        import numpy as np, scipy.sparse as sp
        from cfprune import evaluate
        from cfprune.models import train_als
        import cfprune.models.training as training
        rng = np.random.default_rng(0)
        m = sp.random(300, 80, density=0.1, format="csr", random_state=0, dtype=np.float32)
        m.data[:] = 1
        train_als(m, factors=4, iterations=3, num_threads=1)  # under 5 s: no line
        training.ITERATION_LINE_SECONDS = 0
        model = train_als(m, factors=4, iterations=3, num_threads=1)
        import cfprune.evaluation as ev
        ev.PROGRESS_INTERVAL = 0
        evaluate(model, m, m, ks=(5,), batch_size=50)
        from cfprune.models import train_bpr
        train_bpr(m, factors=4, iterations=2, num_threads=1)
        """)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.decode().splitlines()
    train = [LINE.match(line) for line in lines if line.startswith("train ALS")]
    assert [m["done"] for m in train] == ["1", "2", "3"] and train[0]["total"] == "3"
    blocks = [LINE.match(line) for line in lines if line.startswith("evaluate")]
    assert blocks and blocks[-1]["done"] == blocks[-1]["total"] == "300"
    bpr = [LINE.match(line) for line in lines if line.startswith("train BPR")]
    assert [m["done"] for m in bpr] == ["1", "2"]
