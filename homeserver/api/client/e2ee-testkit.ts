// Test helpers for the E2EE endpoints: a fake client device that makes and signs its keys the way a
// real client would (Ed25519 through spec/signing.ts; curve25519 keys are random bytes, the server only
// checks their shape).
import { randomBytes } from 'node:crypto';
import { encodeBase64 } from '../../../spec/base64.ts';
import { generateSigningKey, signJson, type SigningKey } from '../../../spec/signing.ts';
import type { Client } from './rooms-testkit.ts';

export const curveKey = (): string => encodeBase64(randomBytes(32));

export class FakeDevice {
  readonly client: Client;
  readonly ed: SigningKey;
  private otkCounter = 0;
  constructor(client: Client) {
    this.client = client;
    this.ed = generateSigningKey(client.user.deviceId);
  }
  get userId(): string {
    return this.client.userId;
  }
  get deviceId(): string {
    return this.client.user.deviceId;
  }
  get edPublic(): string {
    return encodeBase64(this.ed.publicKey);
  }
  /** The signed device_keys object. */
  deviceKeys(overrides: Record<string, unknown> = {}, signWith: SigningKey = this.ed): Record<string, unknown> {
    const keys = {
      user_id: this.userId,
      device_id: this.deviceId,
      algorithms: ['m.olm.v1.curve25519-aes-sha2', 'm.megolm.v1.aes-sha2'],
      keys: { [`curve25519:${this.deviceId}`]: curveKey(), [`ed25519:${this.deviceId}`]: this.edPublic },
      ...overrides,
    };
    return signJson(keys, this.userId, signWith);
  }
  /** `n` signed one-time keys keyed `signed_curve25519:<id>`. */
  oneTimeKeys(n: number, signWith: SigningKey = this.ed): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) {
      const id = `AAAA${(this.otkCounter++).toString(36).padStart(4, '0')}`;
      out[`signed_curve25519:${id}`] = signJson({ key: curveKey() }, this.userId, signWith);
    }
    return out;
  }
  fallbackKey(id = `FB${(this.otkCounter++).toString(36)}`): Record<string, unknown> {
    return { [`signed_curve25519:${id}`]: signJson({ key: curveKey(), fallback: true }, this.userId, this.ed) };
  }
  upload(body: Record<string, unknown>) {
    return this.client.call('POST', '/keys/upload', body);
  }
}

/** A user's three cross-signing keys, signed as a client would sign them. */
export class CrossSigning {
  readonly userId: string;
  readonly master = generateSigningKey();
  readonly selfSigning = generateSigningKey();
  readonly userSigning = generateSigningKey();
  constructor(userId: string) {
    this.userId = userId;
    // Key ids of cross-signing keys are their public keys.
    for (const k of [this.master, this.selfSigning, this.userSigning]) (k as { keyId: string }).keyId = `ed25519:${encodeBase64(k.publicKey)}`;
  }
  pub(k: SigningKey): string {
    return encodeBase64(k.publicKey);
  }
  keyObject(k: SigningKey, usage: string): Record<string, unknown> {
    return { user_id: this.userId, usage: [usage], keys: { [`ed25519:${this.pub(k)}`]: this.pub(k) } };
  }
  masterKey(): Record<string, unknown> {
    return this.keyObject(this.master, 'master');
  }
  selfSigningKey(signer: SigningKey = this.master): Record<string, unknown> {
    return signJson(this.keyObject(this.selfSigning, 'self_signing'), this.userId, signer);
  }
  userSigningKey(signer: SigningKey = this.master): Record<string, unknown> {
    return signJson(this.keyObject(this.userSigning, 'user_signing'), this.userId, signer);
  }
  uploadBody(): Record<string, unknown> {
    return { master_key: this.masterKey(), self_signing_key: this.selfSigningKey(), user_signing_key: this.userSigningKey() };
  }
}
