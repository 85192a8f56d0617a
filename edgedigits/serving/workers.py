"""``serve.py --workers N``: N server processes behind the same REST and gRPC ports.

Each worker is ``serve.py`` itself, started with the same arguments plus a hidden
``--worker K`` flag: it loads the models, binds both ports with SO_REUSEPORT (the kernel
spreads new connections over the workers) and serves as one process does. This process only
supervises: it checks the ports are free, starts the workers in their own session (a
terminal's Ctrl-C reaches this process alone, so each worker is asked to stop once), prints
one ready line when every worker is ready, relays their output, forwards SIGINT, SIGTERM and
SIGHUP to all of them and waits for them (each drains its requests in flight, as one process
does). If a worker exits on its own, the others are stopped and the status is 1.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

WORKER_FLAG = "--worker"


def _stop_with_parent() -> None:
    """In a worker before it runs: SIGTERM when the supervisor dies, even by SIGKILL (Linux's
    PR_SET_PDEATHSIG; elsewhere nothing: serve.py runs on Linux only, uvloop)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def supervise(argv: list[str], count: int, script: str,
              on_ready: Callable[[float, list[int]], None]) -> int:
    """Run ``count`` workers (``python script *argv --worker K``) until asked to stop."""
    started = time.perf_counter()
    workers = [subprocess.Popen([sys.executable, script, *argv, WORKER_FLAG, str(number)],
                                stdout=subprocess.PIPE, text=True, start_new_session=True,
                                preexec_fn=_stop_with_parent)
               for number in range(1, count + 1)]
    stopping = threading.Event()

    def forward(signum, frame) -> None:
        stopping.set()
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup: SIGHUP stays ignored
            signal.signal(signum, forward)

    ready: set[int] = set()

    def relay(number: int, worker: subprocess.Popen) -> None:
        for line in worker.stdout:
            if number not in ready and line.startswith("ready in"):
                ready.add(number)
            elif number in ready or stopping.is_set():
                print(f"[worker {number}] {line}", end="", flush=True)

    relays = [threading.Thread(target=relay, args=(n, w), daemon=True)
              for n, w in enumerate(workers, 1)]
    for thread in relays:
        thread.start()
    announced = False
    while not stopping.is_set() and all(worker.poll() is None for worker in workers):
        if not announced and len(ready) == count:
            announced = True
            on_ready(time.perf_counter() - started, [worker.pid for worker in workers])
        time.sleep(0.1)
    if not stopping.is_set():  # a worker ended on its own: stop the others
        forward(signal.SIGTERM, None)
    codes = [worker.wait() for worker in workers]
    for thread in relays:
        thread.join(timeout=5)
    failed = [code for code in codes if code != 0]
    if failed:
        print(f"serve.py: error: {len(failed)} of {count} workers exited with status "
              f"{', '.join(map(str, failed))}", file=sys.stderr, flush=True)
        return 2 if 2 in failed else 1  # 2: a worker refused the arguments or the model
    print(f"stopped: {count} workers", file=sys.stderr, flush=True)
    return 0
