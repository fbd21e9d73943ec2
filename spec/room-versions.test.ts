import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_ROOM_VERSION, ROOM_VERSIONS, getRoomVersion, isValidRoomVersionString, type RoomVersion } from './room-versions.ts';

const rv = (id: string): RoomVersion => getRoomVersion(id)!;
const ids = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11', '12'];

/** The versions (of 1–12) where `flag` holds, to compare against the spec's "added in vN" notes. */
function where(flag: (v: RoomVersion) => boolean): string[] {
  return ids.filter((id) => flag(rv(id)));
}

test('the twelve stable room versions of v1.19, default 12', () => {
  assert.deepEqual([...ROOM_VERSIONS.keys()], ids);
  assert.ok(ids.every((id) => rv(id).stable && rv(id).id === id));
  assert.equal(DEFAULT_ROOM_VERSION, '12');
  assert.equal(getRoomVersion('13'), undefined);
  assert.ok(Object.isFrozen(rv('1')));
});

test('event ids and state resolution per version', () => {
  assert.deepEqual(ids.map((id) => rv(id).eventIdFormat), ['v1', 'v1', 'v3', 'v4', 'v4', 'v4', 'v4', 'v4', 'v4', 'v4', 'v4', 'v4']);
  assert.deepEqual(where((v) => v.eventIdInEvent), ['1', '2']);
  assert.deepEqual(ids.map((id) => rv(id).stateRes), ['v1', 'v2', 'v2', 'v2', 'v2', 'v2', 'v2', 'v2', 'v2', 'v2', 'v2', 'v2.1']);
});

test('redaction variants: v1 (1–5), v6 (6–7), v8 (8), v9 (9–10), v11 (11–12)', () => {
  assert.deepEqual(ids.map((id) => rv(id).redaction), ['v1', 'v1', 'v1', 'v1', 'v1', 'v6', 'v6', 'v8', 'v9', 'v9', 'v11', 'v11']);
  assert.deepEqual(where((v) => v.redactsInContent), ['11', '12']);
});

test('feature flags match the versions that introduced them', () => {
  assert.deepEqual(where((v) => v.enforceKeyValidity), ids.slice(4)); // v5
  assert.deepEqual(where((v) => v.specialCaseAliasesAuth), ['1', '2', '3', '4', '5']); // removed in v6
  assert.deepEqual(where((v) => v.strictCanonicalJson), ids.slice(5)); // v6
  assert.deepEqual(where((v) => v.limitNotificationsPowerLevels), ids.slice(5)); // v6
  assert.deepEqual(where((v) => v.knock), ids.slice(6)); // v7 (rooms/_index.md feature matrix)
  assert.deepEqual(where((v) => v.restrictedJoin), ids.slice(7)); // v8
  assert.deepEqual(where((v) => v.knockRestricted), ids.slice(9)); // v10
  assert.deepEqual(where((v) => v.integerPowerLevels), ids.slice(9)); // v10
  assert.deepEqual(where((v) => v.implicitRoomCreator), ['11', '12']);
  assert.deepEqual(where((v) => v.roomIdFromCreateEvent), ['12']);
  assert.deepEqual(where((v) => v.privilegedCreators), ['12']); // "Additional room creators"
});

test('room version grammar', () => {
  for (const good of ['1', '1.2', '1.2-beta', 'com.example.version', 'a'.repeat(32)]) assert.ok(isValidRoomVersionString(good), good);
  for (const bad of ['', 'A', '1_2', 'a'.repeat(33), 'é', 12]) assert.equal(isValidRoomVersionString(bad), false, String(bad));
});
