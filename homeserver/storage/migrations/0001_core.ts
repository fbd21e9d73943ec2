import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`create table axon_meta (key text primary key, value text not null)`.execute(db);
}
