// node_workload.js - a Node.js workload for tests/programs/node.sh.
// Deterministic output: checksums of seeded data.
'use strict';
const zlib = require('zlib');
const crypto = require('crypto');

let seed = 12345;
function rnd(n) { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; }

// Maps and strings (malloc for external strings, V8 zones for the compiler).
const m = new Map();
let sum = 0;
for (let i = 0; i < 400000; i++) {
  const k = 'k' + rnd(20000);
  const v = (m.get(k) || '') + String.fromCharCode(97 + rnd(26));
  if (v.length > 200) { sum = (sum + v.length * v.charCodeAt(3)) % 1000000007; m.delete(k); }
  else m.set(k, v);
}
console.log('map', m.size, sum);

// Buffers: backing stores from malloc (calloc for zero-filled ones).
const bufs = [];
let h = crypto.createHash('sha256');
for (let i = 0; i < 300; i++) {
  const b = Buffer.alloc(1 + rnd(300000), i & 255);
  b.writeUInt32LE(rnd(1 << 30), 0);
  h.update(b);
  if (rnd(3) === 0) bufs.push(b);
  if (bufs.length > 40) bufs.splice(rnd(bufs.length), 1);
}
console.log('buffers', h.digest('hex'));

// zlib on libuv's thread pool: several compressions in flight at once.
const jobs = [];
for (let i = 0; i < 24; i++) {
  const data = Buffer.alloc(200000 + rnd(500000));
  for (let j = 0; j < data.length; j += 7) data[j] = rnd(8);
  jobs.push(new Promise((resolve, reject) => {
    zlib.deflate(data, (err, out) => {
      if (err) return reject(err);
      zlib.inflate(out, (err2, back) => {
        if (err2) return reject(err2);
        if (!back.equals(data)) return reject(new Error('zlib round trip ' + i));
        resolve(crypto.createHash('md5').update(out).digest('hex'));
      });
    });
  }));
}
Promise.all(jobs).then((r) => {
  console.log('zlib', crypto.createHash('md5').update(r.join(',')).digest('hex'));
}).catch((e) => { console.error(e); process.exit(1); });
