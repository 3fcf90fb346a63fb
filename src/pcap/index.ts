/**
 * wirewatch's pcap toolkit: streaming libpcap and pcapng reading and writing, packet decoding
 * down to the 5-tuple, and merging by timestamp into pcap or pcapng.
 */
export type {
  ByteOrder,
  CaptureInterface,
  CapturePacket,
  DecodedIcmp,
  DecodedIp,
  DecodedPacket,
  DecodedTcp,
  DecodedUdp,
  PacketDirection,
  PacketView,
  PcapFileHeader,
  PcapRecord,
  TimestampPrecision,
} from './types.js';
export { LinkType } from './types.js';
export {
  FILE_HEADER_LENGTH,
  MAGIC_MICRO,
  MAGIC_NANO,
  PCAPNG_MAGIC,
  PCAP_VERSION_MAJOR,
  PCAP_VERSION_MINOR,
  RECORD_HEADER_LENGTH,
  compareTimestamp,
  encodeFileHeader,
  encodeRecordHeader,
  fractionsPerSecond,
  parseFileHeader,
  readRecordHeader,
} from './format.js';
export type { RecordHeader } from './format.js';
export {
  MAX_CAPTURED_LENGTH_LIMIT,
  MIN_CAPTURED_LENGTH_LIMIT,
  createPcapParser,
  openPcapFile,
  readPcapFile,
} from './reader.js';
export { countPcapRecords, repairPcapFile } from './repair.js';
export type {
  OpenPcapFileOptions,
  PcapFileReader,
  PcapParser,
  PcapParserEnd,
  PcapParserOptions,
} from './reader.js';
export type {
  PcapRecordCount,
  PcapRepairResult,
  PcapTimeWindow,
  RepairPcapFileOptions,
} from './repair.js';
export { FileRecordWalker, PcapRecordWalker, countWholeRecords } from './record-walker.js';
export type { FileRecordWalkerOptions, PcapRecordWalkerOptions, ReadAt } from './record-walker.js';
export { compareRecordTime, placeInWindow, recordTimeMs } from './record-time.js';
export type { RecordStampFormat, RecordTimeWindow, WindowPlace } from './record-time.js';
export { createPcapWriter, encodeRecord } from './writer.js';
export type {
  EncodeRecordOptions,
  PcapRecordInput,
  PcapWriter,
  PcapWriterOptions,
} from './writer.js';
export { decodePacket } from './decode.js';
export { mergePcaps } from './merge.js';
export type { MergePcapsOptions, MergePcapsResult } from './merge.js';
export { MERGE_CHUNK_BYTES, mergePcapStreams } from './merge-streams.js';
export type { MergeFormat, MergePcapStreamsOptions, PcapStreamInput } from './merge-streams.js';
export { createCaptureParser, openCaptureFile } from './capture-file.js';
export type { CaptureFileReader, CaptureFormat, CaptureParser } from './capture-file.js';
export { createPcapngParser } from './pcapng-reader.js';
export type { PcapngParser, PcapngParserOptions } from './pcapng-reader.js';
export { createPcapngWriter } from './pcapng-writer.js';
export { PcapngRelay } from './pcapng-relay.js';
export type { PcapngRelayBlocks, PcapngRelayInput } from './pcapng-relay.js';
export type { PcapngPacketInput, PcapngWriter, PcapngWriterOptions } from './pcapng-writer.js';
export type { PcapngInterfaceFields } from './pcapng-format.js';
