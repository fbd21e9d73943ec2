// A kysely dialect for PGlite (PostgreSQL compiled to WASM). PGlite is one connection; kysely may hand
// it to several callers at once, so connections are leased one at a time: a transaction holds the
// lease from BEGIN to COMMIT and no other query can slip into it.
import type { PGlite } from '@electric-sql/pglite';
import {
  CompiledQuery,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type Kysely,
  type QueryResult,
  type TransactionSettings,
} from 'kysely';

class Lease {
  private tail: Promise<void> = Promise.resolve();
  acquire(): Promise<() => void> {
    let release!: () => void;
    const next = new Promise<void>((r) => (release = r));
    const ready = this.tail.then(() => release);
    this.tail = this.tail.then(() => next);
    return ready;
  }
}

class PGliteConnection implements DatabaseConnection {
  readonly db: PGlite;
  constructor(db: PGlite) {
    this.db = db;
  }
  async executeQuery<R>(q: CompiledQuery): Promise<QueryResult<R>> {
    const res = await this.db.query<R>(q.sql, q.parameters as unknown[]);
    const affected = res.affectedRows;
    return affected !== undefined && affected !== null
      ? { rows: res.rows, numAffectedRows: BigInt(affected) }
      : { rows: res.rows };
  }
  async *streamQuery<R>(q: CompiledQuery): AsyncIterableIterator<QueryResult<R>> {
    yield await this.executeQuery<R>(q);
  }
}

class PGliteDriver implements Driver {
  private readonly lease = new Lease();
  private readonly releases = new WeakMap<DatabaseConnection, () => void>();
  private readonly conn: PGliteConnection;
  constructor(db: PGlite) {
    this.conn = new PGliteConnection(db);
  }
  async init(): Promise<void> {
    await this.conn.db.waitReady;
  }
  async acquireConnection(): Promise<DatabaseConnection> {
    const release = await this.lease.acquire();
    // The one connection object is shared; remember the release for this lease.
    const handle = Object.create(this.conn) as PGliteConnection;
    this.releases.set(handle, release);
    return handle;
  }
  async beginTransaction(c: DatabaseConnection, s: TransactionSettings): Promise<void> {
    let sqlText = 'begin';
    if (s.isolationLevel) sqlText += ` isolation level ${s.isolationLevel}`;
    await c.executeQuery(CompiledQuery.raw(sqlText));
  }
  async commitTransaction(c: DatabaseConnection): Promise<void> {
    await c.executeQuery(CompiledQuery.raw('commit'));
  }
  async rollbackTransaction(c: DatabaseConnection): Promise<void> {
    await c.executeQuery(CompiledQuery.raw('rollback'));
  }
  async releaseConnection(c: DatabaseConnection): Promise<void> {
    const release = this.releases.get(c);
    this.releases.delete(c);
    release?.();
  }
  async destroy(): Promise<void> {
    if (!this.conn.db.closed) await this.conn.db.close();
  }
}

export class PGliteDialect implements Dialect {
  readonly db: PGlite;
  constructor(db: PGlite) {
    this.db = db;
  }
  createAdapter() {
    return new PostgresAdapter();
  }
  createDriver(): Driver {
    return new PGliteDriver(this.db);
  }
  createQueryCompiler() {
    return new PostgresQueryCompiler();
  }
  createIntrospector(db: Kysely<any>) {
    return new PostgresIntrospector(db);
  }
}
