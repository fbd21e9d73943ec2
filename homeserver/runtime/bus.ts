// The notification bus: "something changed on stream S at position P for these users/rooms".
// One process uses an in-process emitter; several share Redis pub/sub, so a sync long-poll on one
// worker wakes for a write committed by another. Payloads are small JSON objects; the data itself is
// always read from the database.
import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';

export type BusMessage = Record<string, unknown>;
export type BusListener = (msg: BusMessage) => void;

export interface Bus {
  publish(channel: string, msg: BusMessage): Promise<void>;
  subscribe(channel: string, fn: BusListener): () => void;
  /**
   * Resolves once messages published on `channel` from now on reach this process's listeners. A
   * long-poll registers, awaits this, and only then re-reads the database, so a write that commits in
   * between is never missed (with Redis, SUBSCRIBE takes a round trip to become active).
   */
  whenSubscribed(channel: string): Promise<void>;
  close(): Promise<void>;
}

export class LocalBus implements Bus {
  private readonly em = new EventEmitter();
  constructor() {
    this.em.setMaxListeners(0);
  }
  async publish(channel: string, msg: BusMessage): Promise<void> {
    this.em.emit(channel, msg);
  }
  subscribe(channel: string, fn: BusListener): () => void {
    this.em.on(channel, fn);
    return () => this.em.off(channel, fn);
  }
  whenSubscribed(): Promise<void> {
    return Promise.resolve();
  }
  async close(): Promise<void> {
    this.em.removeAllListeners();
  }
}

export class RedisBus implements Bus {
  private readonly pub: Redis;
  private readonly sub: Redis;
  private readonly prefix: string;
  private readonly local = new EventEmitter();
  private readonly counts = new Map<string, number>();
  private readonly active = new Map<string, Promise<void>>();
  private closed = false;
  constructor(pub: Redis, sub: Redis, prefix: string) {
    this.pub = pub;
    this.sub = sub;
    this.prefix = prefix;
    this.local.setMaxListeners(0);
    this.sub.on('message', (ch: string, payload: string) => {
      if (!ch.startsWith(prefix)) return;
      let msg: BusMessage;
      try {
        msg = JSON.parse(payload) as BusMessage;
      } catch {
        return;
      }
      this.local.emit(ch.slice(prefix.length), msg);
    });
  }
  async publish(channel: string, msg: BusMessage): Promise<void> {
    // A write that commits while the process shuts down has nobody left here to wake.
    if (this.closed) return;
    await this.pub.publish(this.prefix + channel, JSON.stringify(msg));
  }
  subscribe(channel: string, fn: BusListener): () => void {
    const n = this.counts.get(channel) ?? 0;
    this.counts.set(channel, n + 1);
    if (n === 0 && !this.closed) {
      // Failures (Redis gone) surface through the connection's error log; the long-poll then simply
      // runs to its timeout, and the client's next request tries again.
      this.active.set(channel, this.sub.subscribe(this.prefix + channel).then(() => undefined, () => undefined));
    }
    this.local.on(channel, fn);
    return () => {
      this.local.off(channel, fn);
      const left = (this.counts.get(channel) ?? 1) - 1;
      if (left <= 0) {
        this.counts.delete(channel);
        this.active.delete(channel);
        if (!this.closed) this.sub.unsubscribe(this.prefix + channel).catch(() => undefined);
      } else this.counts.set(channel, left);
    };
  }
  whenSubscribed(channel: string): Promise<void> {
    return this.active.get(channel) ?? Promise.resolve();
  }
  async close(): Promise<void> {
    this.closed = true;
    this.local.removeAllListeners();
  }
}
