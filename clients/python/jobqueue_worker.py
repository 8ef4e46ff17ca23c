"""A jobqueue worker over HTTP, in one file, standard library only (no Django).

Run external tasks of a jobqueue server from any machine::

    python jobqueue_worker.py --url http://jobs.example.com --token TOKEN \\
        --task resize=images:resize --task thumbnail=images:thumbnail

Each handler takes the job's payload and returns a JSON value (its result). An
exception fails the attempt, retried while attempts remain; raise
``PermanentFailure`` to fail the job for good.

The loop, meant to be read and ported:

1. ``claim`` up to ``--batch`` jobs of the handlers' tasks, long-polling (the
   server answers as soon as one is due, or empty after ``wait`` seconds);
2. run them one by one; a thread heartbeats every held attempt every third of
   the lease, and when the server says one was taken away (cancelled, recovered,
   moved) the loop drops it: its report would be refused anyway (409);
3. report each outcome (``succeed`` with the result, or ``fail`` with the error
   and traceback); every report names the attempt, the fencing token;
4. on SIGTERM/SIGINT: finish the running job, release the claimed ones not
   started, and exit.

Guarantees (the server's): a job runs at least once (a worker that dies loses
its lease and the job is claimed again) and completes exactly once (a late
report of a lost attempt changes nothing). So handlers should be idempotent.
"""

import argparse
import importlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("jobqueue_worker")


class PermanentFailure(Exception):
    """Raise from a handler to fail the job without further attempts."""


class Stale(Exception):
    """The server refused a report: this attempt is no longer ours (409)."""


class Refused(Exception):
    """The server refused a request as invalid (4xx other than 409): sending it again
    would be refused again."""


class Client:
    """The protocol's five calls, as JSON over HTTP with a token."""

    def __init__(self, url: str, token: str, worker_id: str, timeout: float = 30) -> None:
        self.url, self.token, self.worker_id, self.timeout = (
            url.rstrip("/"),
            token,
            worker_id,
            timeout,
        )

    def post(self, path: str, body: dict[str, Any], timeout: float | None = None) -> Any:
        data = json.dumps({"worker_id": self.worker_id, **body}).encode()
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"--url must be http(s): {self.url!r}")
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
            self.url + path,
            data=data,
            method="POST",
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as answer:  # noqa: S310
                return json.load(answer)
        except urllib.error.HTTPError as error:
            if error.code == 409:
                raise Stale(json.load(error).get("detail", "")) from None
            if 400 <= error.code < 500:
                raise Refused(f"{error.code}: {error.read().decode(errors='replace')}") from None
            raise

    def claim(self, tasks: list[str], limit: int, wait: float) -> list[dict[str, Any]]:
        body = {"tasks": tasks, "limit": limit, "wait": wait}
        body |= {"hostname": socket.gethostname(), "pid": os.getpid()}
        return self.post("/api/worker/claim", body, timeout=wait + self.timeout)["jobs"]

    def heartbeat(self, held: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.post("/api/worker/heartbeat", {"jobs": held})["taken"]

    def succeed(self, job: dict[str, Any], result: Any) -> None:
        self.post(
            f"/api/worker/jobs/{job['id']}/succeed", {"attempt": job["attempt"], "result": result}
        )

    def fail(self, job: dict[str, Any], error: str, trace: str, retry: bool) -> None:
        body = {"attempt": job["attempt"], "error": error, "traceback": trace, "retry": retry}
        self.post(f"/api/worker/jobs/{job['id']}/fail", body)

    def release(self, jobs: list[dict[str, Any]]) -> None:
        held = [{"id": job["id"], "attempt": job["attempt"]} for job in jobs]
        self.post("/api/worker/release", {"jobs": held, "started": False})


class Worker:
    """Claim, run, heartbeat, report; stop gracefully."""

    def __init__(
        self,
        client: Client,
        handlers: dict[str, Callable[[Any], Any]],
        batch: int = 10,
        wait: float = 20,
    ) -> None:
        self.client, self.handlers, self.batch, self.wait = client, handlers, batch, wait
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.held: dict[str, dict[str, Any]] = {}  # job id -> claimed job, until reported
        self.taken: set[tuple[str, int]] = set()  # attempts the server took away

    def stop(self, *_: Any) -> None:
        if self.stopping.is_set():  # a second signal: stop now (leases bring the jobs back)
            logger.warning("stopping now")
            raise SystemExit(1)
        logger.info("stopping: finishing the running job, releasing the rest")
        self.stopping.set()

    def run(self) -> None:
        beats = threading.Thread(target=self._heartbeats, daemon=True)
        beats.start()
        while not self.stopping.is_set():
            try:
                jobs = self.client.claim(list(self.handlers), self.batch, self.wait)
            except (OSError, urllib.error.URLError) as error:
                logger.warning("claim failed, retrying: %s", error)
                self.stopping.wait(1)
                continue
            with self.lock:
                self.held.update({job["id"]: job for job in jobs})
            for job in jobs:
                if self.stopping.is_set():
                    break
                self._run_one(job)
            self._release_unstarted()

    def _run_one(self, job: dict[str, Any]) -> None:
        if (job["id"], job["attempt"]) in self.taken:
            self._forget(job)
            return
        try:
            result = self.handlers[job["task"]](job["payload"])
        except Exception as error:
            self._report(
                job,
                "fail",
                f"{type(error).__name__}: {error}",
                traceback.format_exc(),
                not isinstance(error, PermanentFailure),
            )
        else:
            try:
                json.dumps(result)
            except (TypeError, ValueError) as error:
                self._report(job, "fail", f"the result is not JSON: {error}", "", False)
                return
            self._report(job, "succeed", result)

    def _report(self, job: dict[str, Any], verb: str, *args: Any) -> None:
        """Report an outcome; retry a network error a few times (the attempt is still ours
        while its lease lasts); an invalid report (e.g. a result over the server's size
        limit) fails the job for good, saying why."""
        for delay in (0.5, 1, 2, 4, None):
            try:
                getattr(self.client, verb)(job, *args)
                logger.info("job %s attempt %s: %s", job["id"], job["attempt"], verb)
                break
            except Stale as refused:
                logger.warning(
                    "job %s attempt %s: report refused: %s", job["id"], job["attempt"], refused
                )
                break
            except Refused as refused:
                logger.error("job %s: %s refused: %s", job["id"], verb, refused)
                if verb == "succeed":  # a result the server will not take: say so, for good
                    verb, args = "fail", (f"the server refused the result: {refused}", "", False)
                    continue
                # A failure report too large or invalid: send a short one.
                verb, args = "fail", (str(args[0])[:1000], "", args[2])
            except (OSError, urllib.error.URLError) as error:
                if delay is None:  # the lease runs out and the job is claimed again
                    logger.error(
                        "job %s: could not report (%s); it will run again", job["id"], error
                    )
                    break
                time.sleep(delay)
        self._forget(job)

    def _forget(self, job: dict[str, Any]) -> None:
        with self.lock:
            self.held.pop(job["id"], None)

    def _release_unstarted(self) -> None:
        with self.lock:
            unstarted = list(self.held.values())
            self.held.clear()
        if unstarted:
            try:
                self.client.release(unstarted)
            except (OSError, urllib.error.URLError) as error:
                logger.warning("release failed (their leases will expire): %s", error)

    def _heartbeats(self) -> None:
        """Renew the held attempts' leases every third of the lease; note those taken away."""
        lease = None  # seconds, as the server says with each claimed job
        while True:
            time.sleep(lease / 3 if lease else 0.2)
            with self.lock:
                held = [{"id": j["id"], "attempt": j["attempt"]} for j in self.held.values()]
                lease = min((j["lease_seconds"] for j in self.held.values()), default=lease)
            if not held:
                continue
            try:
                for item in self.client.heartbeat(held):
                    if (item["id"], item["attempt"]) not in self.taken:
                        logger.warning("job %s was taken away: dropping it", item["id"])
                    self.taken.add((item["id"], item["attempt"]))
            except (OSError, urllib.error.URLError, Stale) as error:
                logger.warning("heartbeat failed: %s", error)


def load(spec: str) -> tuple[str, Callable[[Any], Any]]:
    """``name=module:function`` -> (name, the function)."""
    name, _, target = spec.partition("=")
    module, _, function = target.partition(":")
    return name, getattr(importlib.import_module(module), function)


def main() -> None:
    # Run as a script: handlers' modules are found from the current directory, and a
    # handler's ``from jobqueue_worker import PermanentFailure`` is this module's class.
    sys.path.insert(0, os.getcwd())
    sys.modules.setdefault("jobqueue_worker", sys.modules[__name__])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--token", default=os.environ.get("JOBQUEUE_TOKEN"), help="API token")
    parser.add_argument("--task", action="append", required=True, help="NAME=module:function")
    parser.add_argument("--worker-id", default=f"{socket.gethostname()}-{os.getpid()}")
    parser.add_argument("--batch", type=int, default=10, help="jobs per claim (1-100)")
    parser.add_argument(
        "--wait", type=float, default=5, help="long poll seconds (a stop waits for it to end)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    worker = Worker(
        Client(args.url, args.token, args.worker_id),
        dict(load(spec) for spec in args.task),
        batch=args.batch,
        wait=args.wait,
    )
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    worker.run()


if __name__ == "__main__":
    main()
