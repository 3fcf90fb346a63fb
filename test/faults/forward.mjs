// A TCP forwarder for the network-cut test, run inside the server's lab namespace:
//   ip netns exec NS node forward.mjs HOST PORT UNIX_PATH
// Every connection to HOST:PORT is piped to the Unix socket UNIX_PATH, which the test process
// (outside the namespaces) answers. Prints "ready" once listening; exits when stdin closes.
// Plain JavaScript: it runs without a TypeScript loader.
import net from 'node:net';

const [host, port, unixPath] = process.argv.slice(2);
const server = net.createServer((inbound) => {
  const outbound = net.connect({ path: unixPath });
  inbound.on('error', () => outbound.destroy());
  outbound.on('error', () => inbound.destroy());
  inbound.pipe(outbound);
  outbound.pipe(inbound);
});
server.listen(Number(port), host, () => process.stdout.write('ready\n'));
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
