// A jobqueue worker in Node 20 (built-in fetch, no packages): claims jobs of one external
// task, runs them and reports each outcome. A sketch of the protocol; see
// clients/python/jobqueue_worker.py for heartbeats and a graceful stop.
//
//   JOBQUEUE_URL=http://127.0.0.1:8000 JOBQUEUE_TOKEN=... JOBQUEUE_TASK=resize node node-worker.mjs
//
// JOBQUEUE_ONCE=1 stops after the first batch that did some work.

const url = process.env.JOBQUEUE_URL ?? "http://127.0.0.1:8000";
const token = process.env.JOBQUEUE_TOKEN;
const task = process.env.JOBQUEUE_TASK;
const workerId = `node-${process.pid}`;

async function post(path, body) {
  const answer = await fetch(url + path, {
    method: "POST",
    headers: { Authorization: `Token ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ worker_id: workerId, ...body }),
  });
  const json = await answer.json();
  if (answer.status === 409) return { stale: json.detail }; // the attempt is no longer ours
  if (!answer.ok) throw new Error(`${path}: ${answer.status} ${JSON.stringify(json)}`);
  return json;
}

// The work itself: replace with yours. Its return value is the job's result.
async function handle(payload) {
  return { n: payload.n, by: "node" };
}

for (;;) {
  const { jobs } = await post("/api/worker/claim", { tasks: [task], limit: 10, wait: 20 });
  for (const job of jobs) {
    let report;
    try {
      const result = await handle(job.payload);
      report = await post(`/api/worker/jobs/${job.id}/succeed`, { attempt: job.attempt, result });
    } catch (error) {
      report = await post(`/api/worker/jobs/${job.id}/fail`, {
        attempt: job.attempt,
        error: String(error),
        traceback: error.stack ?? "",
      });
    }
    console.log(`job ${job.id} attempt ${job.attempt}: ${report.stale ?? report.status}`);
  }
  if (jobs.length && process.env.JOBQUEUE_ONCE === "1") break;
}
