// A steady stream of numbered UDP datagrams for the lab tests, run inside a lab namespace:
//   ip netns exec NS node seq-traffic.mjs '{"src","sport","dst","dport","size","gapMs"}'
// Datagram n carries "WWSQ" and n (uint32 BE) at the start of its payload, so a capture file
// shows which datagrams it holds, and whether one is there twice. Each datagram waits for its
// echo (or 500 ms) and then `gapMs` before the next. After each datagram is sent, its number + 1
// (datagrams sent so far) is printed on a line of its own. Ends when stdin closes, printing
// {"sent","echoed"} as the last line. Plain JavaScript: it runs without a TypeScript loader.
import dgram from 'node:dgram';

const flow = JSON.parse(process.argv[2] ?? '{}');
const socket = dgram.createSocket(flow.dst.includes(':') ? 'udp6' : 'udp4');
await new Promise((resolve) => socket.bind(flow.sport, flow.src, resolve));

let running = true;
process.stdin.resume();
process.stdin.on('end', () => (running = false));

let sent = 0;
let echoed = 0;
let waiting;
socket.on('message', () => {
  echoed++;
  waiting?.();
});
const size = Math.max(8, flow.size ?? 100);
while (running) {
  const payload = Buffer.alloc(size, 0x2e);
  payload.write('WWSQ', 0, 'latin1');
  payload.writeUInt32BE(sent, 4);
  const echo = new Promise((resolve) => {
    const timer = setTimeout(resolve, 500);
    waiting = () => {
      clearTimeout(timer);
      resolve();
    };
  });
  await new Promise((resolve) => socket.send(payload, flow.dport, flow.dst, resolve));
  sent++;
  process.stdout.write(`${sent}\n`);
  await echo;
  waiting = undefined;
  await new Promise((resolve) => setTimeout(resolve, flow.gapMs ?? 20));
}
socket.close();
process.stdout.write(JSON.stringify({ sent, echoed }) + '\n');
