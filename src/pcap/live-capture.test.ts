/**
 * Files written by the real tcpdump, capturing real loopback traffic, read and decoded by
 * wirewatch and compared field by field with tshark. Traffic goes only to 127.0.0.1 and ::1,
 * and tcpdump captures only this test's ports.
 */
import { createSocket } from 'node:dgram';
import type { Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { createConnection, createServer } from 'node:net';
import type { AddressInfo, Server } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decodePacket } from './decode.js';
import { openPcapFile } from './reader.js';
import {
  isRoot,
  makeTempDir,
  removeTempDir,
  startTcpdump,
  summarize,
  tsharkFields,
  tsharkSummaries,
} from '../../test/support/pcap-tools.js';
import type { TcpdumpCapture } from '../../test/support/pcap-tools.js';
import { LinkType } from './types.js';
import type { DecodedPacket, PcapRecord } from './types.js';

const FIN = 0x01;
const SYN = 0x02;
const ACK = 0x10;
const UDP_SIZES = [10, 100, 1000];
const LOCALHOST_V4 = 0x7f000001n;
const LOCALHOST_V6 = 1n;

interface Ports {
  udp4: number;
  udp6: number;
  tcp4: number;
  tcp6: number;
}

/** Listening sockets on loopback with kernel-chosen ports, closed by `close`. */
async function listen(): Promise<{ ports: Ports; close: () => Promise<void> }> {
  const udpSockets: UdpSocket[] = [];
  const servers: Server[] = [];
  const received = { count: 0 };
  const bindUdp = async (type: 'udp4' | 'udp6', address: string): Promise<number> => {
    const socket = createSocket(type);
    udpSockets.push(socket);
    socket.on('message', () => received.count++);
    socket.bind(0, address);
    await once(socket, 'listening');
    return socket.address().port;
  };
  const listenTcp = async (address: string): Promise<number> => {
    const server = createServer((socket) => {
      socket.on('data', () => socket.end('pong'));
      socket.on('error', () => undefined);
    });
    servers.push(server);
    server.listen(0, address);
    await once(server, 'listening');
    return (server.address() as AddressInfo).port;
  };
  const ports = {
    udp4: await bindUdp('udp4', '127.0.0.1'),
    udp6: await bindUdp('udp6', '::1'),
    tcp4: await listenTcp('127.0.0.1'),
    tcp6: await listenTcp('::1'),
  };
  return {
    ports,
    close: async () => {
      for (const s of udpSockets) s.close();
      await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
    },
  };
}

async function sendUdp(type: 'udp4' | 'udp6', address: string, port: number): Promise<void> {
  const socket = createSocket(type);
  try {
    for (const size of UDP_SIZES) {
      await new Promise<void>((resolve, reject) =>
        socket.send(Buffer.alloc(size, 0x55), port, address, (e) => (e ? reject(e) : resolve())),
      );
    }
  } finally {
    socket.close();
  }
}

/** One TCP connection: handshake, "ping-data", "pong", both sides' FIN. */
async function tcpExchange(address: string, port: number): Promise<void> {
  const socket = createConnection({ host: address, port });
  try {
    await once(socket, 'connect');
    socket.write('ping-data');
    await once(socket, 'data');
    socket.end();
    await once(socket, 'close');
  } finally {
    socket.destroy();
  }
}

interface CaptureCase {
  readonly name: string;
  readonly iface: 'lo' | 'any';
  readonly args: readonly string[];
  readonly linkType: number;
  readonly precision: 'micro' | 'nano';
}

const cases: CaptureCase[] = [
  { name: 'lo (Ethernet)', iface: 'lo', args: [], linkType: LinkType.ETHERNET, precision: 'micro' },
  {
    name: 'lo with nanosecond timestamps',
    iface: 'lo',
    args: ['--time-stamp-precision', 'nano'],
    linkType: LinkType.ETHERNET,
    precision: 'nano',
  },
  {
    name: 'any (Linux cooked v1)',
    iface: 'any',
    args: ['-y', 'LINUX_SLL'],
    linkType: LinkType.LINUX_SLL,
    precision: 'micro',
  },
  {
    name: 'any (Linux cooked v2), nanoseconds',
    iface: 'any',
    args: ['-y', 'LINUX_SLL2', '--time-stamp-precision', 'nano'],
    linkType: LinkType.LINUX_SLL2,
    precision: 'nano',
  },
];

describe.skipIf(!isRoot)('real tcpdump captures (skipped: capturing on lo/any needs root)', () => {
  let dir: string | undefined;
  let capture: TcpdumpCapture | undefined;
  let closeSockets: (() => Promise<void>) | undefined;

  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    capture?.kill();
    capture = undefined;
    await closeSockets?.();
    closeSockets = undefined;
    await removeTempDir(dir);
  });

  it.each(cases)(
    'reads and decodes $name as tshark does',
    async ({ iface, args, linkType, precision }) => {
      const { ports, close } = await listen();
      closeSockets = close;
      const file = join(dir ?? '', 'capture.pcap');
      const filter =
        `(udp and host 127.0.0.1 and port ${ports.udp4}) or (udp and host ::1 and port ${ports.udp6})` +
        ` or (tcp and host 127.0.0.1 and port ${ports.tcp4}) or (tcp and host ::1 and port ${ports.tcp6})`;
      capture = await startTcpdump(iface, file, filter, args);

      await sendUdp('udp4', '127.0.0.1', ports.udp4);
      await sendUdp('udp6', '::1', ports.udp6);
      await tcpExchange('127.0.0.1', ports.tcp4);
      await tcpExchange('::1', ports.tcp6);
      // 6 datagrams and at least 2 × 8 segments (3 handshake, data, its ACK or the reply,
      // reply, FIN each way).
      const stopped = await capture.stop(6 + 2 * 8);
      expect(stopped.stderr).toContain('0 packets dropped by kernel');

      const reader = await openPcapFile(file);
      expect(reader.header).toMatchObject({ linkType, precision });
      const records: PcapRecord[] = [];
      for await (const r of reader.records) records.push(r);
      expect(reader.truncatedBytes()).toBe(0);
      const packets = records.map((r) => decodePacket(linkType, r.data));

      // Timestamps and lengths, as tshark reads the same file.
      const fractionDigits = precision === 'nano' ? 9 : 6;
      const frames = await tsharkFields(file, ['frame.time_epoch', 'frame.len', 'frame.cap_len']);
      expect(
        records.map((r) => [
          `${r.tsSec}.${String(r.tsFrac).padStart(fractionDigits, '0').padEnd(9, '0')}`,
          String(r.originalLength),
          String(r.capturedLength),
        ]),
      ).toEqual(frames);

      // Addresses, ports, lengths, TCP flags and sequence numbers, direction.
      expect(packets.map(summarize)).toEqual(await tsharkSummaries(file));

      // And what this test sent is there.
      expectUdp(packets, 4, ports.udp4);
      expectUdp(packets, 6, ports.udp6);
      expectTcp(packets, 4, ports.tcp4);
      expectTcp(packets, 6, ports.tcp6);
      if (linkType !== LinkType.ETHERNET) {
        for (const p of packets) expect(['inbound', 'outbound']).toContain(p.direction);
      }
    },
  );
});

function expectUdp(packets: readonly DecodedPacket[], version: 4 | 6, port: number): void {
  const localhost = version === 4 ? LOCALHOST_V4 : LOCALHOST_V6;
  const datagrams = packets.filter((p) => p.udp?.dstPort === port);
  expect(datagrams.map((p) => p.udp?.payloadLength)).toEqual(UDP_SIZES);
  for (const p of datagrams) {
    expect(p.ip).toMatchObject({ version, src: localhost, dst: localhost, fragment: false });
    expect(p.ip?.length).toBe((p.udp?.payloadLength ?? 0) + 8 + (version === 4 ? 20 : 40));
  }
}

function expectTcp(packets: readonly DecodedPacket[], version: 4 | 6, port: number): void {
  const segments = packets.filter(
    (p) => p.ip?.version === version && (p.tcp?.dstPort === port || p.tcp?.srcPort === port),
  );
  const toServer = segments.filter((p) => p.tcp?.dstPort === port);
  const fromServer = segments.filter((p) => p.tcp?.srcPort === port);
  const syn = toServer[0]?.tcp;
  const synAck = fromServer[0]?.tcp;
  expect(syn?.flags).toBe(SYN);
  expect(synAck?.flags).toBe(SYN | ACK);
  expect(synAck?.ack).toBe(((syn?.seq ?? 0) + 1) >>> 0);
  expect(toServer.some((p) => p.tcp?.payloadLength === 'ping-data'.length)).toBe(true);
  expect(fromServer.some((p) => p.tcp?.payloadLength === 'pong'.length)).toBe(true);
  expect(toServer.some((p) => ((p.tcp?.flags ?? 0) & FIN) !== 0)).toBe(true);
  expect(fromServer.some((p) => ((p.tcp?.flags ?? 0) & FIN) !== 0)).toBe(true);
}
