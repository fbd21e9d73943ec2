// Filter definitions (client-server-api "Filtering"; data/api/client-server/definitions/sync_filter.yaml,
// event_filter.yaml, room_event_filter.yaml). `validateFilter` checks the types of every known field
// and returns the first problem as "path: what is wrong", or null. Unknown fields are allowed.

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

function stringList(v: unknown, path: string): string | null {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) return `${path}: must be a list of strings`;
  return null;
}

function eventFilter(f: unknown, path: string): string | null {
  if (!isObj(f)) return `${path}: must be an object`;
  if (f.limit !== undefined && (typeof f.limit !== 'number' || !Number.isInteger(f.limit) || f.limit < 0)) return `${path}.limit: must be a non-negative integer`;
  for (const k of ['not_senders', 'not_types', 'senders', 'types']) {
    if (f[k] !== undefined) {
      const e = stringList(f[k], `${path}.${k}`);
      if (e) return e;
    }
  }
  return null;
}

function roomEventFilter(f: unknown, path: string): string | null {
  const e = eventFilter(f, path);
  if (e) return e;
  const o = f as Obj;
  for (const k of ['contains_url', 'include_redundant_members', 'lazy_load_members', 'unread_thread_notifications']) {
    if (o[k] !== undefined && typeof o[k] !== 'boolean') return `${path}.${k}: must be true or false`;
  }
  for (const k of ['not_rooms', 'rooms']) {
    if (o[k] !== undefined) {
      const le = stringList(o[k], `${path}.${k}`);
      if (le) return le;
    }
  }
  return null;
}

function roomFilter(f: unknown, path: string): string | null {
  if (!isObj(f)) return `${path}: must be an object`;
  for (const k of ['not_rooms', 'rooms']) {
    if (f[k] !== undefined) {
      const e = stringList(f[k], `${path}.${k}`);
      if (e) return e;
    }
  }
  if (f.include_leave !== undefined && typeof f.include_leave !== 'boolean') return `${path}.include_leave: must be true or false`;
  for (const k of ['account_data', 'ephemeral', 'state', 'timeline']) {
    if (f[k] !== undefined) {
      const e = roomEventFilter(f[k], `${path}.${k}`);
      if (e) return e;
    }
  }
  return null;
}

export function validateFilter(f: unknown): string | null {
  if (!isObj(f)) return 'filter: must be an object';
  if (f.event_fields !== undefined) {
    const e = stringList(f.event_fields, 'event_fields');
    if (e) return e;
  }
  if (f.event_format !== undefined && f.event_format !== 'client' && f.event_format !== 'federation') return 'event_format: must be "client" or "federation"';
  for (const k of ['account_data', 'presence']) {
    if (f[k] !== undefined) {
      const e = eventFilter(f[k], k);
      if (e) return e;
    }
  }
  if (f.room !== undefined) return roomFilter(f.room, 'room');
  return null;
}
