// The database's table types. Each storage module adds its own tables by augmenting `Tables`:
//
//   declare module '../storage/schema.ts' { interface Tables { users: UsersTable } }
//
// so a module owns its tables' types next to its queries, and `Db` knows them all.
import type { Kysely, Transaction } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface Tables {
  axon_meta: { key: string; value: string };
}

export type Db = Kysely<Tables>;
export type Tx = Transaction<Tables>;
/** Either the database or an open transaction: storage functions accept both. */
export type Queryable = Kysely<Tables> | Transaction<Tables>;
