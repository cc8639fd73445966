// fanout for Node.js (itself on libuv): 10,000 operations x 10 steps, `yield` (setImmediate) or
// `timer` (setTimeout 0), in callback style or async/await. Prints one JSON line per trial:
// {"ms": <wall ms>, "completed": <operations that finished all their steps>}.
// usage: node fanout.js callbacks|async yield|timer OPS STEPS TRIALS
'use strict';
const [style, variant, opsArg, stepsArg, trialsArg] = process.argv.slice(2);
const ops = Number(opsArg), steps = Number(stepsArg), trials = Number(trialsArg);
if (!['callbacks', 'async'].includes(style) || !['yield', 'timer'].includes(variant)) {
  console.error('usage: node fanout.js callbacks|async yield|timer OPS STEPS TRIALS');
  process.exit(2);
}
const defer = variant === 'yield' ? (f) => setImmediate(f) : (f) => setTimeout(f, 0);
const next = () => new Promise((resolve) => defer(resolve));

function runCallbacks(done) {
  let completed = 0, finished = 0, stepsTaken = 0;
  for (let i = 0; i < ops; i++) {
    let remaining = steps;
    const step = () => {
      stepsTaken++;
      if (--remaining === 0) {
        completed++;
        if (++finished === ops) done(completed, stepsTaken);
      } else defer(step);
    };
    defer(step);
  }
}

async function runAsync() {
  let completed = 0, stepsTaken = 0;
  const op = async () => {
    for (let s = 0; s < steps; s++) { await next(); stepsTaken++; }
    completed++;
  };
  const all = [];
  for (let i = 0; i < ops; i++) all.push(op());
  await Promise.all(all);
  return [completed, stepsTaken];
}

async function main() {
  for (let t = 0; t < trials; t++) {
    const start = process.hrtime.bigint();
    const [completed, stepsTaken] = style === 'callbacks'
      ? await new Promise((resolve) => runCallbacks((c, s) => resolve([c, s])))
      : await runAsync();
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    if (stepsTaken !== ops * steps) { console.error(`took ${stepsTaken} steps, expected ${ops * steps}`); process.exit(1); }
    console.log(JSON.stringify({ ms, completed }));
  }
}
main();
