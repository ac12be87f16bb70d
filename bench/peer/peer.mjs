// The peer of docs/benchmarks.md: graphile-worker 0.17.3 on the same PostgreSQL, doing what Verdict's
// `verdict bench --only steps|step-latency` does: drain no-op jobs, and start single jobs on an idle worker.
// Run by bench/peer/run.sh, which installs graphile-worker in a scratch folder (NODE_PATH points there).
//
//   node peer.mjs drain CONN JOBS PROCESSES   adds JOBS no-op jobs in one add_jobs call, then PROCESSES worker
//                                             processes drain them; prints `drain: N jobs in S s = R jobs/s`
//   node peer.mjs work CONN                   one worker process (spawned by drain), reports over IPC
//   node peer.mjs latency CONN PROBES RATE    one idle worker; PROBES single jobs added RATE per second from
//                                             another connection; prints p50/p99/max start latency in ms
import { fork } from "node:child_process";
import { performance } from "node:perf_hooks";
import { createRequire } from "node:module";

const require = createRequire(process.env.PEER_MODULES + "/");
const { run, runMigrations } = require("graphile-worker");
const pg = require("pg");

// The batching options graphile-worker documents for its best throughput (worker.graphile.org/docs/performance).
const preset = {
  worker: {
    concurrentJobs: 24,
    maxPoolSize: 25,
    localQueue: { size: 500 },
    completeJobBatchDelay: 0,
    failJobBatchDelay: 0,
  },
};

const silent = () => () => {};
const quiet = { logger: new (require("@graphile/logger").Logger)(silent) };

async function reset(conn) {
  await runMigrations({ connectionString: conn, ...quiet });
  const client = new pg.Client({ connectionString: conn });
  await client.connect();
  await client.query("DELETE FROM graphile_worker._private_jobs");
  await client.query("DELETE FROM graphile_worker._private_job_queues");
  await client.query("VACUUM ANALYZE graphile_worker._private_jobs");
  await client.end();
}

async function remaining(conn) {
  const client = new pg.Client({ connectionString: conn });
  await client.connect();
  const { rows } = await client.query("SELECT count(*)::int AS n FROM graphile_worker._private_jobs");
  await client.end();
  return rows[0].n;
}

async function drain(conn, jobs, processes) {
  await reset(conn);
  const client = new pg.Client({ connectionString: conn });
  await client.connect();
  await client.query(
    `SELECT count(*) FROM graphile_worker.add_jobs(ARRAY(
       SELECT ROW('noop', json_build_object('i', i), NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec
       FROM generate_series(1, $1) AS i))`,
    [jobs],
  );
  await client.end();
  const children = [];
  let ready = 0;
  let done = 0;
  let started;
  let allRan;
  const finished = new Promise((resolve) => (allRan = resolve));
  const allReady = new Promise((resolve) => {
    for (let p = 0; p < processes; p++) {
      const child = fork(new URL(import.meta.url).pathname, ["work", conn], { env: process.env });
      child.on("message", (m) => {
        if (m.ready && ++ready === processes) resolve();
        if (m.ran) {
          done += m.ran;
          if (done >= jobs) allRan();
        }
      });
      children.push(child);
    }
  });
  await allReady;
  started = performance.now();
  for (const child of children) child.send({ go: true });
  await finished;
  // Completions are batched: the drain ends when the table is empty, as Verdict's ends when its steps are done.
  while ((await remaining(conn)) > 0) await new Promise((r) => setTimeout(r, 5));
  const seconds = (performance.now() - started) / 1000;
  for (const child of children) child.send({ stop: true });
  await Promise.all(children.map((c) => new Promise((r) => c.on("exit", r))));
  console.log(`drain: ${jobs} jobs by ${processes} process(es) in ${seconds.toFixed(2)} s = ${Math.round(jobs / seconds)} jobs/s`);
}

async function work(conn) {
  let ran = 0;
  let runner;
  process.on("message", async (m) => {
    if (m.go) {
      runner = await run({
        connectionString: conn,
        noHandleSignals: true,
        preset,
        taskList: { noop: async () => { ran++; } },
        ...quiet,
      });
      const report = setInterval(() => {
        if (ran) { process.send({ ran }); ran = 0; }
      }, 5);
      runner.promise.finally(() => clearInterval(report));
    }
    if (m.stop) {
      await runner?.stop();
      process.exit(0);
    }
  });
  process.send({ ready: true });
}

async function latency(conn, probes, rate) {
  await reset(conn);
  const started = new Map();
  const runner = await run({
    connectionString: conn,
    noHandleSignals: true,
    preset,
    taskList: { probe: async (payload) => { started.set(payload.i, performance.now()); } },
    ...quiet,
  });
  const client = new pg.Client({ connectionString: conn });
  await client.connect();
  await new Promise((r) => setTimeout(r, 500));
  const latencies = [];
  const interval = 1000 / rate;
  for (let i = 0; i < probes; i++) {
    const due = performance.now() + interval;
    await client.query("SELECT graphile_worker.add_job('probe', json_build_object('i', $1::int))", [i]);
    const added = performance.now();
    while (!started.has(i)) {
      await new Promise((r) => setImmediate(r));
      if (performance.now() - added > 5000) throw new Error(`probe ${i} did not start within 5 s`);
    }
    latencies.push(started.get(i) - added);
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  await client.end();
  await runner.stop();
  latencies.sort((a, b) => a - b);
  const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
  console.log(
    `latency: ${probes} jobs at ${rate}/s: p50 ${at(0.5).toFixed(2)} ms, p99 ${at(0.99).toFixed(2)} ms, max ${latencies[latencies.length - 1].toFixed(2)} ms`,
  );
}

const [mode, conn, a, b] = process.argv.slice(2);
const main = { drain: () => drain(conn, Number(a), Number(b)), work: () => work(conn), latency: () => latency(conn, Number(a), Number(b)) }[mode];
if (!main) {
  console.error("usage: peer.mjs drain CONN JOBS PROCESSES | latency CONN PROBES RATE");
  process.exit(2);
}
await main();
if (mode !== "work") process.exit(0);
