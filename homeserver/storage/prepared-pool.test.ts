import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StatementNamer } from './prepared-pool.ts';

test('a statement text gets a stable name once it repeats; one-off and multi-statement texts stay unnamed', () => {
  const n = new StatementNamer();
  const q = 'select * from events where event_id = $1';
  assert.equal(n.nameFor(q, ['a']), null);
  assert.equal(n.nameFor(q, ['b']), null);
  const name = n.nameFor(q, ['c']);
  assert.match(name ?? '', /^axon_[0-9a-f]{24}$/);
  assert.equal(n.nameFor(q, ['d']), name);
  assert.notEqual(n.nameFor('select 2 where $1', [1]) ?? n.nameFor('select 2 where $1', [1]) ?? n.nameFor('select 2 where $1', [1]), name);
  const multi = 'create table a (x int); create table b (y int)';
  for (let i = 0; i < 5; i++) assert.equal(n.nameFor(multi, []), null);
});

test('the number of named texts is bounded', () => {
  const n = new StatementNamer();
  let named = 0;
  for (let i = 0; i < 1000; i++) for (let k = 0; k < 3; k++) if (n.nameFor(`select ${i} where $1`, [k]) !== null) named++;
  assert.ok(named > 0 && named <= 256, `named ${named}`);
});
