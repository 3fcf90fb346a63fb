// Traffic for the lab, run inside a namespace: `ip netns exec NS node traffic.mjs serve|send JSON`.
// Plain JavaScript so that it runs without a TypeScript loader in a child process.
//
// serve [{proto, host, port}]           UDP: echo every datagram back; TCP: echo every byte back.
//                                       Prints "ready" when listening; exits when stdin closes.
// send  [{proto, src, sport, dst, dport, count?, size?, bytes?}]
//                                       UDP: `count` datagrams of `size` bytes, each awaited as
//                                       an echo; TCP: connect from src:sport, write `bytes`, read
//                                       the echo, close. Prints a JSON summary.
import dgram from 'node:dgram';
import net from 'node:net';

const [mode, spec] = process.argv.slice(2);
const items = JSON.parse(spec ?? '[]');
const family = (address) => (address.includes(':') ? 'udp6' : 'udp4');

async function serve() {
  const closers = [];
  for (const item of items) {
    if (item.proto === 'udp') {
      const socket = dgram.createSocket({ type: family(item.host), reuseAddr: true });
      socket.on('message', (msg, rinfo) => socket.send(msg, rinfo.port, rinfo.address));
      await new Promise((resolve) => socket.bind(item.port, item.host, resolve));
      closers.push(() => socket.close());
    } else {
      const server = net.createServer((conn) => {
        conn.on('error', () => {});
        conn.pipe(conn);
      });
      await new Promise((resolve) => server.listen(item.port, item.host, resolve));
      closers.push(() => server.close());
    }
  }
  process.stdout.write('ready\n');
  process.stdin.resume();
  process.stdin.on('end', () => {
    for (const close of closers) close();
    process.exit(0);
  });
}

async function sendUdp(item) {
  const socket = dgram.createSocket(family(item.dst));
  await new Promise((resolve) => socket.bind(item.sport, item.src, resolve));
  let echoed = 0;
  const payload = Buffer.alloc(item.size ?? 64, 0x61);
  for (let i = 0; i < (item.count ?? 1); i++) {
    const echo = new Promise((resolve) => {
      const timer = setTimeout(resolve, 2000);
      socket.once('message', () => {
        clearTimeout(timer);
        echoed++;
        resolve();
      });
    });
    socket.send(payload, item.dport, item.dst);
    await echo;
  }
  socket.close();
  return { ...item, sent: item.count ?? 1, echoed };
}

async function sendTcp(item) {
  const total = item.bytes ?? 1000;
  const received = await new Promise((resolve, reject) => {
    let got = 0;
    const conn = net.connect({
      host: item.dst,
      port: item.dport,
      localAddress: item.src,
      localPort: item.sport,
    });
    conn.on('error', reject);
    conn.on('connect', () => {
      conn.write(Buffer.alloc(total, 0x62));
    });
    conn.on('data', (d) => {
      got += d.length;
      if (got >= total) conn.end();
    });
    conn.on('close', () => resolve(got));
  });
  return { ...item, sent: total, echoed: received };
}

async function send() {
  const results = [];
  for (const item of items) {
    results.push(item.proto === 'udp' ? await sendUdp(item) : await sendTcp(item));
  }
  process.stdout.write(JSON.stringify(results) + '\n');
}

await (mode === 'serve' ? serve() : send());
