// Wakes waiting /sync long-polls. One bus subscription per channel that has waiters in this process
// (shared by all of them), and per waiter only a small record: the channels it waits on and the
// resolver of its promise. So an idle long-poll costs a few hundred bytes here, whatever the number
// of rooms, and a write wakes exactly the requests of the users and rooms it concerns.
//
// A waiter is registered before the request reads its stream positions: a write that commits after
// the read publishes after it too, and finds the waiter (no lost wake-ups).
import type { Bus, BusMessage } from '../runtime/bus.ts';

export class Waiter {
  fired = false;
  /** Set while someone awaits the waiter. */
  resolve: (() => void) | null = null;
  timer: NodeJS.Timeout | null = null;
  /** The highest `events` stream position a wake-up announced (0: none). */
  eventsPosition = 0;
  /** The highest position each wake-up announced, by stream; `unplaced` when one came without any. */
  readonly announced = new Map<string, number>();
  unplaced = false;
  /**
   * Whether a wake-up announced something a response at `positions` did not cover (a position above
   * the response's for its stream, or a wake-up without a position). A waiter registered before that
   * response read its positions and fired only for what it covers may go on waiting.
   */
  firedBeyond(positions: ReadonlyMap<string, number>): boolean {
    if (!this.fired) return false;
    if (this.unplaced) return true;
    for (const [stream, pos] of this.announced) {
      const covered = positions.get(stream);
      if (covered === undefined || pos > covered) return true;
    }
    return false;
  }
  readonly channels: string[];
  constructor(channels: string[]) {
    this.channels = channels;
  }
}

export class SyncNotifier {
  private readonly bus: Bus;
  private readonly waiters = new Map<string, Set<Waiter>>();
  private readonly unsubscribe = new Map<string, () => void>();

  constructor(bus: Bus) {
    this.bus = bus;
  }

  /** Long-polls registered and not yet released in this process (for the bench and metrics). */
  private readonly registered = new Set<Waiter>();
  get waitingCount(): number {
    return this.registered.size;
  }

  /**
   * A waiter kept between two requests of a client (SyncService's lingering waiters) is not a held
   * long-poll: `parked` takes it out of waitingCount, `unpark` puts it back. It stays subscribed.
   */
  park(w: Waiter): void {
    this.registered.delete(w);
  }
  unpark(w: Waiter): void {
    this.registered.add(w);
  }

  /**
   * Registers a waiter on `channels` and resolves once the bus delivers them to this process; call
   * `release` when done with it. Read the database only after this resolves.
   */
  async register(channels: string[]): Promise<Waiter> {
    const w = new Waiter(channels);
    this.registered.add(w);
    for (const ch of channels) {
      let set = this.waiters.get(ch);
      if (!set) {
        this.waiters.set(ch, (set = new Set()));
        this.unsubscribe.set(ch, this.bus.subscribe(ch, (m) => this.fire(ch, m)));
      }
      set.add(w);
    }
    await Promise.all(channels.map((ch) => this.bus.whenSubscribed(ch)));
    return w;
  }

  private fire(ch: string, m: BusMessage): void {
    const set = this.waiters.get(ch);
    if (!set) return;
    const stream = typeof m['stream'] === 'string' ? m['stream'] : null;
    const position = typeof m['position'] === 'number' ? m['position'] : null;
    const events = stream === 'events' && position !== null ? position : 0;
    for (const w of set) {
      if (events > w.eventsPosition) w.eventsPosition = events;
      if (stream === null || position === null) w.unplaced = true;
      else if (position > (w.announced.get(stream) ?? 0)) w.announced.set(stream, position);
      wake(w);
    }
  }

  /** Waits until the waiter fires or `ms` pass. Returns true when woken. */
  wait(w: Waiter, ms: number): Promise<boolean> {
    if (w.fired) return Promise.resolve(true);
    if (ms <= 0) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      w.resolve = () => resolve(w.fired);
      w.timer = setTimeout(() => {
        w.timer = null;
        const r = w.resolve;
        w.resolve = null;
        r?.();
      }, ms);
    });
  }

  release(w: Waiter): void {
    this.registered.delete(w);
    if (w.timer) clearTimeout(w.timer);
    w.timer = null;
    w.resolve = null;
    for (const ch of w.channels) {
      const set = this.waiters.get(ch);
      if (!set) continue;
      set.delete(w);
      if (set.size === 0) {
        this.waiters.delete(ch);
        this.unsubscribe.get(ch)?.();
        this.unsubscribe.delete(ch);
      }
    }
  }

  /** Wakes every waiter (shutdown). */
  wakeAll(): void {
    for (const set of this.waiters.values()) for (const w of set) wake(w);
  }

  /** For tests and metrics. */
  get channelCount(): number {
    return this.waiters.size;
  }
}

function wake(w: Waiter): void {
  w.fired = true;
  if (w.timer) {
    clearTimeout(w.timer);
    w.timer = null;
  }
  const r = w.resolve;
  w.resolve = null;
  r?.();
}
