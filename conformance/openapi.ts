// Validates HTTP exchanges against the Matrix spec's client-server OpenAPI definitions.
//
// Loads every data/api/client-server/*.yaml of a matrix-spec checkout (AXON_SPEC_DIR, default
// ../shared/matrix-spec beside the repository), indexes its operations by method and full path template
// (the server's basePath + the path key), and on demand inlines every `$ref` of a schema (relative
// files, JSON-pointer fragments, recursively; a reference back into a schema being inlined becomes a
// local `$defs` entry) and compiles it with ajv's draft 2020-12 dialect, the dialect of OpenAPI 3.1
// and of the event schemas. Compiled validators are cached per operation and status.
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { ErrorObject, ValidateFunction } from 'ajv';

export interface ResponseCheckError {
  method: string;
  path: string;
  status: number;
  /** Each names the JSON path of the field (`$` is the body) and what is wrong with it. */
  errors: string[];
}

export interface RequestCheckError {
  method: string;
  path: string;
  errors: string[];
}

/** One operation of the spec, as matched against a concrete request path. */
export interface OperationInfo {
  method: string;
  /** Full template, e.g. /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId} */
  template: string;
  operationId: string | undefined;
  /** Spec file relative to the client-server API directory, e.g. room_send.yaml */
  file: string;
  /** Decoded values of the template's parameters. */
  params: Record<string, string>;
}

/** Per-file figures from {@link SpecValidator.verifyAllRefs}. */
export interface FileRefReport {
  file: string;
  operations: number;
  /** `$ref`s followed, counting those inside files reached from this one. */
  refs: number;
  /** Unresolvable references: "from-file#pointer: $ref -> why". */
  unresolved: string[];
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'] as const;

/** Keywords that only annotate: dropped before compiling (ajv need not know them). */
const ANNOTATIONS = new Set([
  '$schema', '$id', '$comment', 'title', 'description', 'example', 'examples', 'default', 'deprecated',
  'readOnly', 'writeOnly', 'externalDocs', 'xml', 'discriminator', 'nullable',
]);
/** Keywords whose value maps names to subschemas. */
const SCHEMA_MAPS = new Set(['properties', 'patternProperties', 'dependentSchemas']);
/** Keywords whose value is one subschema. */
const SCHEMA_SINGLE = new Set([
  'additionalProperties', 'additionalItems', 'not', 'if', 'then', 'else', 'contains', 'propertyNames',
  'unevaluatedProperties', 'unevaluatedItems', 'contentSchema', 'items',
]);
/** Keywords whose value is a list of subschemas. */
const SCHEMA_LISTS = new Set(['allOf', 'anyOf', 'oneOf', 'prefixItems']);

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Formats the spec uses, checked leniently; any other format is accepted as is. */
const FORMATS: Record<string, RegExp | ((s: string) => boolean)> = {
  'mx-user-id': /^@[^:\s]+:\S+$/,
  'mx-room-id': /^!\S+$/,
  'mx-event-id': /^\$\S+$/,
  'mx-room-alias': /^#[^:\s]+:\S+$/,
  'mx-server-name': /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$/,
  'mx-mxc-uri': /^mxc:\/\/[^/\s]+\/[A-Za-z0-9_-]+$/,
  'mx-unpadded-base64': /^[A-Za-z0-9+/]*$/,
  'mx-urlsafe-unpadded-base64': /^[A-Za-z0-9_-]*$/,
  uri: (s) => URL.canParse(s),
  email: /^[^@\s]+@[^@\s]+$/,
};

export function defaultSpecDir(): string {
  return process.env.AXON_SPEC_DIR || resolve(import.meta.dirname, '..', '..', 'shared', 'matrix-spec');
}

interface Operation {
  method: string;
  template: string;
  segments: string[];
  literals: number;
  file: string;
  pointer: string;
  op: JsonObject;
}

interface Resolved {
  file: string;
  pointer: string;
  value: unknown;
}

interface DerefContext {
  stack: string[];
  recursive: Set<string>;
  defs: JsonObject;
  formats: Set<string>;
}

function decodePointerToken(t: string): string {
  return decodeURIComponent(t).replace(/~1/g, '/').replace(/~0/g, '~');
}

function encodePointerToken(t: string): string {
  return t.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** `$`-rooted path of an ajv instancePath, walking the data to tell array indexes from keys. */
function jsonPath(instancePath: string, data: unknown, extraKey?: string): string {
  let out = '$';
  let cur: unknown = data;
  const tokens = instancePath === '' ? [] : instancePath.slice(1).split('/').map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (extraKey !== undefined) tokens.push(extraKey);
  for (const t of tokens) {
    if (Array.isArray(cur) && /^\d+$/.test(t)) {
      out += `[${t}]`;
      cur = cur[Number(t)];
    } else {
      out += /^[A-Za-z_][A-Za-z0-9_]*$/.test(t) ? `.${t}` : `[${JSON.stringify(t)}]`;
      cur = isObject(cur) ? cur[t] : undefined;
    }
  }
  return out;
}

function shortJson(v: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** Human-readable, de-duplicated field errors from ajv's output. */
export function describeErrors(errors: ErrorObject[] | null | undefined, data: unknown): string[] {
  const out: string[] = [];
  for (const e of errors ?? []) {
    const p = e.params as Record<string, unknown>;
    let line: string;
    switch (e.keyword) {
      case 'required':
        line = `${jsonPath(e.instancePath, data, String(p.missingProperty))}: required property is missing`;
        break;
      case 'additionalProperties':
      case 'unevaluatedProperties':
        line = `${jsonPath(e.instancePath, data, String(p.additionalProperty ?? p.unevaluatedProperty))}: property is not allowed here (${e.keyword}: false)`;
        break;
      case 'enum':
        line = `${jsonPath(e.instancePath, data)}: must be one of ${shortJson(p.allowedValues)}, got ${shortJson(e.data)}`;
        break;
      default:
        line = `${jsonPath(e.instancePath, data)}: ${e.message ?? e.keyword}${e.keyword === 'if' ? '' : `, got ${shortJson(e.data)}`}`;
    }
    line += ` [schema ${e.schemaPath}]`;
    if (!out.includes(line)) out.push(line);
  }
  return out;
}

export class SpecValidator {
  readonly specDir: string;
  readonly apiDir: string;
  /** Parsed YAML documents by absolute path (the API files and every file reached by a `$ref`). */
  private readonly docs = new Map<string, unknown>();
  private readonly operations: Operation[] = [];
  private readonly files: string[];
  private readonly ajv: Ajv2020;
  private readonly validators = new Map<string, ValidateFunction>();
  private readonly knownFormats = new Set<string>();

  private constructor(specDir: string, apiDir: string, files: string[]) {
    this.specDir = specDir;
    this.apiDir = apiDir;
    this.files = files;
    this.ajv = new Ajv2020({
      strict: false,
      allErrors: true,
      verbose: true,
      allowUnionTypes: true,
      validateSchema: false,
      addUsedSchema: false,
    });
    for (const [name, check] of Object.entries(FORMATS)) {
      this.ajv.addFormat(name, check instanceof RegExp ? check : { type: 'string', validate: check });
      this.knownFormats.add(name);
    }
    // Matrix requires JSON integers within the canonical-JSON range.
    this.ajv.addFormat('int64', { type: 'number', validate: (n: number) => !Number.isInteger(n) || Number.isSafeInteger(n) });
    this.ajv.addFormat('float', { type: 'number', validate: () => true });
    this.knownFormats.add('int64').add('float');
  }

  /** Loads and indexes every client-server API file of a matrix-spec checkout. */
  static async load(specDir: string = defaultSpecDir()): Promise<SpecValidator> {
    const apiDir = join(specDir, 'data', 'api', 'client-server');
    const files = readdirSync(apiDir).filter((f) => f.endsWith('.yaml')).sort();
    if (files.length === 0) throw new Error(`no OpenAPI files in ${apiDir}`);
    const v = new SpecValidator(specDir, apiDir, files);
    for (const f of files) v.indexFile(join(apiDir, f));
    return v;
  }

  /** The API files loaded, relative to the client-server directory. */
  get apiFiles(): readonly string[] {
    return this.files;
  }

  get operationCount(): number {
    return this.operations.length;
  }

  private doc(file: string): unknown {
    let d = this.docs.get(file);
    if (d === undefined) {
      d = parseYaml(readFileSync(file, 'utf8'), { maxAliasCount: -1 }) as unknown;
      this.docs.set(file, d);
    }
    return d;
  }

  private indexFile(file: string): void {
    const doc = this.doc(file);
    if (!isObject(doc) || !isObject(doc.paths)) throw new Error(`${file}: not an OpenAPI document with paths`);
    const base = basePath(doc);
    for (const [rawKey, item] of Object.entries(doc.paths)) {
      // Some files give a path key a trailing space to define the same path twice.
      const template = base + rawKey.trim();
      let pathItem = item;
      if (isObject(pathItem) && typeof pathItem.$ref === 'string') pathItem = this.resolveRef(file, pathItem.$ref).value;
      if (!isObject(pathItem)) continue;
      const segments = template.split('/');
      for (const m of METHODS) {
        const op = pathItem[m];
        if (!isObject(op)) continue;
        this.operations.push({
          method: m.toUpperCase(),
          template,
          segments,
          literals: segments.filter((s) => !/^\{[^}]+\}$/.test(s)).length,
          file,
          pointer: `/paths/${encodePointerToken(rawKey)}/${m}`,
          op,
        });
      }
    }
  }

  /** Resolves a `$ref` written in `fromFile`. Throws when the file or the pointer does not exist. */
  resolveRef(fromFile: string, ref: string): Resolved {
    const hash = ref.indexOf('#');
    const filePart = hash === -1 ? ref : ref.slice(0, hash);
    const pointer = hash === -1 ? '' : ref.slice(hash + 1);
    if (/^[a-z][a-z0-9+.-]*:/i.test(filePart)) throw new Error(`absolute reference not supported: ${ref}`);
    const file = filePart === '' ? fromFile : resolve(dirname(fromFile), filePart);
    let value: unknown;
    try {
      value = this.doc(file);
    } catch (e) {
      throw new Error(`cannot load ${relative(this.specDir, file)}: ${(e as Error).message}`);
    }
    if (pointer !== '') {
      if (!pointer.startsWith('/')) throw new Error(`unsupported fragment #${pointer} (only JSON pointers)`);
      for (const raw of pointer.slice(1).split('/')) {
        const token = decodePointerToken(raw);
        if (Array.isArray(value) && /^\d+$/.test(token)) value = value[Number(token)];
        else if (isObject(value) && Object.hasOwn(value, token)) value = value[token];
        else throw new Error(`pointer #${pointer} not found in ${relative(this.specDir, file)}`);
      }
    }
    return { file, pointer, value };
  }

  /** Follows `$ref`s of a non-schema object (response, parameter, request body) to the object itself. */
  private follow(node: unknown, file: string): Resolved {
    let cur: Resolved = { file, pointer: '', value: node };
    for (let i = 0; i < 32 && isObject(cur.value) && typeof cur.value.$ref === 'string'; i++) {
      cur = this.resolveRef(cur.file, cur.value.$ref);
    }
    return cur;
  }

  /** A copy of a schema with every `$ref` inlined and annotations dropped, ready for ajv. */
  private deref(node: unknown, file: string, ctx: DerefContext): unknown {
    if (Array.isArray(node)) return node.map((n) => this.deref(n, file, ctx));
    if (!isObject(node)) return node;
    let base: unknown = undefined;
    if (typeof node.$ref === 'string') {
      const target = this.resolveRef(file, node.$ref);
      const key = `${relative(this.specDir, target.file)}#${target.pointer}`;
      const defName = key.replace(/[^A-Za-z0-9_.-]/g, '_');
      if (ctx.stack.includes(key)) {
        ctx.recursive.add(key);
        base = { $ref: `#/$defs/${encodePointerToken(defName)}` };
      } else {
        ctx.stack.push(key);
        base = this.deref(target.value, target.file, ctx);
        ctx.stack.pop();
        if (ctx.recursive.has(key)) ctx.defs[defName] = base;
      }
    }
    const out: JsonObject = {};
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' || ANNOTATIONS.has(k) || k.startsWith('x-') || k === '$defs' || k === 'definitions') continue;
      if (SCHEMA_MAPS.has(k) && isObject(v)) {
        const m: JsonObject = {};
        for (const [name, sub] of Object.entries(v)) m[name] = this.deref(sub, file, ctx);
        out[k] = m;
      } else if (k === 'items' && Array.isArray(v)) {
        out.prefixItems = v.map((s) => this.deref(s, file, ctx)); // pre-2020 tuple form
      } else if (SCHEMA_SINGLE.has(k)) {
        out[k] = this.deref(v, file, ctx);
      } else if (SCHEMA_LISTS.has(k) && Array.isArray(v)) {
        out[k] = v.map((s) => this.deref(s, file, ctx));
      } else {
        if (k === 'format' && typeof v === 'string') ctx.formats.add(v);
        out[k] = v;
      }
    }
    // OpenAPI 3.0's `nullable: true` is `type: [..., "null"]` in 3.1.
    if (node.nullable === true && out.type !== undefined) {
      const types = Array.isArray(out.type) ? [...(out.type as unknown[])] : [out.type];
      if (!types.includes('null')) types.push('null');
      out.type = types;
      if (Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = [...out.enum, null];
    }
    if (base === undefined) return out;
    if (Object.keys(out).length === 0) return base;
    return { allOf: [base], ...out };
  }

  private compile(key: string, schema: unknown, file: string): ValidateFunction {
    let v = this.validators.get(key);
    if (v) return v;
    const ctx: DerefContext = { stack: [], recursive: new Set(), defs: {}, formats: new Set() };
    let root = this.deref(schema, file, ctx);
    if (Object.keys(ctx.defs).length > 0) {
      root = isObject(root) ? { ...root, $defs: ctx.defs } : { allOf: [root], $defs: ctx.defs };
    }
    for (const f of ctx.formats) {
      if (!this.knownFormats.has(f)) {
        this.ajv.addFormat(f, true);
        this.knownFormats.add(f);
      }
    }
    try {
      v = this.ajv.compile(root as object);
    } catch (e) {
      throw new Error(`cannot compile schema ${key}: ${(e as Error).message}`);
    }
    this.validators.set(key, v);
    return v;
  }

  /** The operations whose template matches a concrete path (any method), best match (most literal segments) first. */
  private matchPath(urlPath: string): { op: Operation; params: Record<string, string> }[] {
    let path = urlPath;
    if (/^[a-z]+:\/\//i.test(path)) path = new URL(path).pathname;
    path = path.replace(/[?#].*$/, '');
    const segs = path.split('/');
    const found: { op: Operation; params: Record<string, string> }[] = [];
    for (const op of this.operations) {
      let t = op.segments;
      // `/rooms/{roomId}/state/{eventType}` with the empty state key left out altogether.
      if (t.length === segs.length + 1 && /^\{[^}]+\}$/.test(t[t.length - 1]!) && op.template.includes('{stateKey}')) {
        t = t.slice(0, -1);
      }
      if (t.length !== segs.length) continue;
      const params: Record<string, string> = {};
      let ok = true;
      for (let i = 0; i < t.length && ok; i++) {
        const ts = t[i]!;
        const m = /^\{([^}]+)\}$/.exec(ts);
        if (m) {
          try {
            params[m[1]!] = decodeURIComponent(segs[i]!);
          } catch {
            params[m[1]!] = segs[i]!;
          }
        } else if (ts !== segs[i]) {
          ok = false;
        }
      }
      if (ok) found.push({ op, params });
    }
    found.sort((a, b) => b.op.literals - a.op.literals || b.op.segments.length - a.op.segments.length);
    return found;
  }

  /** The operations for a method and concrete path: several when the spec defines the same one twice. */
  private match(method: string, urlPath: string): { op: Operation; params: Record<string, string> }[] {
    const m = method.toUpperCase();
    const all = this.matchPath(urlPath).filter((x) => x.op.method === m);
    if (all.length === 0) return [];
    const best = all[0]!.op;
    return all.filter((x) => x.op.literals === best.literals && x.op.segments.length === best.segments.length);
  }

  /** Which spec operation a request is, or null. */
  findOperation(method: string, urlPath: string): OperationInfo | null {
    const found = this.match(method, urlPath)[0];
    if (!found) return null;
    return {
      method: found.op.method,
      template: found.op.template,
      operationId: typeof found.op.op.operationId === 'string' ? found.op.op.operationId : undefined,
      file: relative(this.apiDir, found.op.file),
      params: found.params,
    };
  }

  /** The response object for a status: exact code, then `4XX`-style range, then `default`. */
  private responseFor(op: Operation, status: number): { resolved: Resolved; key: string } | null {
    const responses = isObject(op.op.responses) ? op.op.responses : {};
    const range = `${Math.floor(status / 100)}XX`;
    for (const k of Object.keys(responses)) {
      if (k === String(status)) return { resolved: this.follow(responses[k], op.file), key: k };
    }
    for (const k of Object.keys(responses)) {
      if (k.toUpperCase() === range) return { resolved: this.follow(responses[k], op.file), key: k };
    }
    if (responses.default !== undefined) return { resolved: this.follow(responses.default, op.file), key: 'default' };
    return null;
  }

  private documentedStatuses(op: Operation): string[] {
    return isObject(op.op.responses) ? Object.keys(op.op.responses) : [];
  }

  /** The content types documented for a response, or 'unknown' when no operation matches. */
  responseContentTypes(method: string, urlPath: string, status: number): string[] | 'unknown' {
    const ops = this.match(method, urlPath);
    if (ops.length === 0) return 'unknown';
    const types = new Set<string>();
    for (const { op } of ops) {
      const r = this.responseFor(op, status);
      if (r && isObject(r.resolved.value) && isObject(r.resolved.value.content)) {
        for (const t of Object.keys(r.resolved.value.content)) types.add(t);
      } else if (!r && status >= 400) {
        types.add('application/json');
      }
    }
    return [...types];
  }

  private validatorForResponse(op: Operation, status: number): { validate: ValidateFunction; key: string } | { undocumented: true } | null {
    const r = this.responseFor(op, status);
    if (!r) {
      if (status >= 400) {
        // Every Matrix error is a standard error body, documented on the operation or not.
        const key = 'definitions/errors/error.yaml';
        return { validate: this.compile(key, { $ref: key }, join(this.apiDir, 'versions.yaml')), key };
      }
      return { undocumented: true };
    }
    const resp = r.resolved.value;
    if (!isObject(resp) || !isObject(resp.content)) return null;
    const media = resp.content['application/json'];
    if (!isObject(media) || media.schema === undefined) return null;
    const key = `${relative(this.apiDir, op.file)}#${op.pointer}/responses/${r.key}`;
    return { validate: this.compile(key, media.schema, r.resolved.file), key };
  }

  /**
   * Validates a JSON response body. Returns null when it conforms, the field errors when not, and
   * 'unknown' when no operation of the spec has this method and path.
   */
  checkResponse(method: string, urlPath: string, status: number, body: unknown): ResponseCheckError | null | 'unknown' {
    const ops = this.match(method, urlPath);
    if (ops.length === 0) return 'unknown';
    const path = cleanPath(urlPath);
    let best: string[] | null = null;
    for (const { op } of ops) {
      const v = this.validatorForResponse(op, status);
      if (v === null) return null; // documented without a JSON body: nothing to check
      if ('undocumented' in v) {
        const errs = [`$: status ${status} is not a documented response of ${op.method} ${op.template} (documented: ${this.documentedStatuses(op).join(', ')})`];
        if (!best || errs.length < best.length) best = errs;
        continue;
      }
      if (v.validate(body)) return null;
      const errs = describeErrors(v.validate.errors, body);
      if (!best || errs.length < best.length) best = errs;
    }
    return { method: method.toUpperCase(), path, status, errors: best ?? [] };
  }

  /** Validates a JSON request body against the operation's request body schema (null when none is documented). */
  checkRequest(method: string, urlPath: string, body: unknown): RequestCheckError | null | 'unknown' {
    const ops = this.match(method, urlPath);
    if (ops.length === 0) return 'unknown';
    let best: string[] | null = null;
    for (const { op } of ops) {
      const rb = this.follow(op.op.requestBody, op.file);
      if (!isObject(rb.value) || !isObject(rb.value.content)) return null;
      const media = rb.value.content['application/json'];
      if (!isObject(media) || media.schema === undefined) return null;
      const key = `${relative(this.apiDir, op.file)}#${op.pointer}/requestBody`;
      const validate = this.compile(key, media.schema, rb.file);
      if (validate(body)) return null;
      const errs = describeErrors(validate.errors, body);
      if (!best || errs.length < best.length) best = errs;
    }
    return { method: method.toUpperCase(), path: cleanPath(urlPath), errors: best ?? [] };
  }

  /**
   * Follows every `$ref` reachable from each API file (into other files too) and compiles every
   * response and request schema: the figures per file, with what did not resolve or compile.
   */
  verifyAllRefs(): FileRefReport[] {
    const reports: FileRefReport[] = [];
    for (const f of this.files) {
      const file = join(this.apiDir, f);
      const report: FileRefReport = { file: f, operations: 0, refs: 0, unresolved: [] };
      const seen = new Set<string>();
      const walk = (node: unknown, inFile: string, at: string): void => {
        if (Array.isArray(node)) {
          node.forEach((n, i) => walk(n, inFile, `${at}/${i}`));
          return;
        }
        if (!isObject(node)) return;
        if (typeof node.$ref === 'string') {
          report.refs++;
          try {
            const t = this.resolveRef(inFile, node.$ref);
            const key = `${t.file}#${t.pointer}`;
            if (!seen.has(key)) {
              seen.add(key);
              walk(t.value, t.file, t.pointer);
            }
          } catch (e) {
            report.unresolved.push(`${relative(this.specDir, inFile)}#${at}: ${node.$ref} -> ${(e as Error).message}`);
          }
        }
        for (const [k, v] of Object.entries(node)) {
          if (k !== '$ref') walk(v, inFile, `${at}/${encodePointerToken(k)}`);
        }
      };
      walk(this.doc(file), file, '');
      for (const op of this.operations.filter((o) => o.file === file)) {
        report.operations++;
        const responses = isObject(op.op.responses) ? op.op.responses : {};
        for (const status of Object.keys(responses)) {
          try {
            const n = Number(status);
            if (Number.isInteger(n)) this.validatorForResponse(op, n);
            else {
              const r = this.follow(responses[status], op.file).value;
              const schema = isObject(r) && isObject(r.content) && isObject(r.content['application/json']) ? r.content['application/json'].schema : undefined;
              if (schema !== undefined) this.compile(`${f}#${op.pointer}/responses/${status}`, schema, op.file);
            }
          } catch (e) {
            report.unresolved.push(`${op.method} ${op.template} ${status}: ${(e as Error).message}`);
          }
        }
        try {
          const rb = this.follow(op.op.requestBody, op.file);
          if (isObject(rb.value) && isObject(rb.value.content)) {
            const media = rb.value.content['application/json'];
            if (isObject(media) && media.schema !== undefined) this.compile(`${f}#${op.pointer}/requestBody`, media.schema, rb.file);
          }
        } catch (e) {
          report.unresolved.push(`${op.method} ${op.template} request body: ${(e as Error).message}`);
        }
      }
      reports.push(report);
    }
    return reports;
  }
}

function cleanPath(urlPath: string): string {
  const p = /^[a-z]+:\/\//i.test(urlPath) ? new URL(urlPath).pathname : urlPath;
  return p.replace(/[?#].*$/, '');
}

/** The `basePath` server variable's default (e.g. /_matrix/client/v3), or the path of a literal server URL. */
function basePath(doc: JsonObject): string {
  const servers = Array.isArray(doc.servers) ? doc.servers : [];
  const s = servers[0];
  if (!isObject(s) || typeof s.url !== 'string') return '';
  const vars = isObject(s.variables) ? s.variables : {};
  const url = s.url.replace(/\{([^}]+)\}/g, (_m, name: string) => {
    const v = vars[name];
    return isObject(v) && v.default !== undefined ? String(v.default) : '';
  });
  const m = /^[a-z]+:\/\/[^/]*(\/.*)?$/i.exec(url);
  const p = m ? (m[1] ?? '') : url;
  return p.replace(/\/$/, '');
}
