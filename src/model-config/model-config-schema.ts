import * as protobuf from 'protobufjs';
import { MODEL_CONFIG_PROTO } from './proto-files';
import { PbMessage, PbScalar, PbtxtSchemaError, PbField } from './pbtxt';

/**
 * Checks a parsed config.pbtxt against Triton's ModelConfig schema and turns it into the plain object
 * form protobuf's JSON mapping uses (snake_case keys, enum names, int64 as strings). Triton refuses a
 * config with an unknown field or a bad enum value at load time; the agent does the same check up front
 * so the caller gets a 400 naming the line instead of Triton's generic "failed to poll".
 */

const root = new protobuf.Root();
root.loadSync(MODEL_CONFIG_PROTO, { keepCase: true });
root.resolveAll();
export const ModelConfigType = root.lookupType('inference.ModelConfig');

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

const INT64_TYPES = new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);
const INT32_TYPES = new Set(['int32', 'uint32', 'sint32', 'fixed32', 'sfixed32']);

function fail(f: { line: number; column: number }, detail: string): never {
  throw new PbtxtSchemaError(detail, f.line, f.column);
}

function scalarToJson(field: protobuf.Field, v: PbScalar, at: PbField, typeName: string): JsonValue {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Enum) {
    if (v.kind === 'ident' && v.text in resolved.values) return v.text;
    if (v.kind === 'number' && /^\d+$/.test(v.text)) {
      const name = resolved.valuesById[Number(v.text)];
      if (name !== undefined) return name;
    }
    const shown = v.kind === 'string' ? JSON.stringify(v.value) : v.text;
    return fail(at, `unknown enumeration value ${shown} for field "${field.name}" of "${typeName}"`);
  }
  if (resolved) return fail(at, `field "${field.name}" of "${typeName}" is a message; expected '{'`);
  const t = field.type;
  if (t === 'string' || t === 'bytes') {
    if (v.kind !== 'string') return fail(at, `expected a string for field "${field.name}"`);
    return t === 'bytes' ? Buffer.from(v.value, 'utf8').toString('base64') : v.value;
  }
  if (t === 'bool') {
    if (v.kind === 'ident' && ['true', 'True', 't'].includes(v.text)) return true;
    if (v.kind === 'ident' && ['false', 'False', 'f'].includes(v.text)) return false;
    if (v.kind === 'number' && (v.text === '0' || v.text === '1')) return v.text === '1';
    return fail(at, `expected true or false for field "${field.name}"`);
  }
  if (v.kind !== 'number' && !(v.kind === 'ident' && /^-?(inf|infinity|nan)$/i.test(v.text))) {
    return fail(at, `expected a number for field "${field.name}"`);
  }
  const text = v.text;
  if (INT64_TYPES.has(t) || INT32_TYPES.has(t)) {
    if (!/^-?(\d+|0[xX][0-9a-fA-F]+)$/.test(text))
      return fail(at, `expected an integer for field "${field.name}"`);
    const neg = text.startsWith('-');
    const big = (neg ? -1n : 1n) * BigInt(text.replace(/^-/, ''));
    if (t.startsWith('u') && neg)
      return fail(at, `expected a non-negative integer for field "${field.name}"`);
    if (INT32_TYPES.has(t)) {
      const [lo, hi] = t.startsWith('u') ? [0n, 4294967295n] : [-2147483648n, 2147483647n];
      if (big < lo || big > hi) return fail(at, `integer out of range for field "${field.name}"`);
      return Number(big);
    }
    return big.toString();
  }
  const n = Number(text.replace(/[fF]$/, '').replace(/^(-?)inf(inity)?$/i, '$1Infinity'));
  if (Number.isNaN(n) && !/nan/i.test(text)) return fail(at, `expected a number for field "${field.name}"`);
  return Number.isFinite(n) ? n : String(n);
}

function messageToJson(msg: PbMessage, type: protobuf.Type): JsonObject {
  const out: JsonObject = {};
  for (const f of msg.fields) {
    const field = type.fields[f.name];
    if (!field) fail(f, `message type "${type.fullName.replace(/^\./, '')}" has no field named "${f.name}"`);
    const items = f.value.kind === 'list' ? f.value.items : [f.value];
    if (f.value.kind === 'list' && !field.repeated && !field.map) {
      fail(f, `field "${f.name}" is not repeated; a list is not allowed`);
    }
    if (field instanceof protobuf.MapField) {
      const map = (out[f.name] ?? {}) as JsonObject;
      for (const item of items) {
        if (item.kind !== 'message') fail(f, `map field "${f.name}" needs { key: ... value: ... } entries`);
        let key = '';
        let value: JsonValue = null;
        for (const e of item.fields) {
          if (e.name === 'key') {
            if (e.value.kind === 'message' || e.value.kind === 'list') fail(e, 'a map key must be a scalar');
            key = e.value.kind === 'string' ? e.value.value : e.value.text;
          } else if (e.name === 'value') {
            if (field.resolvedType instanceof protobuf.Type) {
              if (e.value.kind !== 'message') fail(e, `map value of "${f.name}" must be a message`);
              value = messageToJson(e.value, field.resolvedType);
            } else {
              if (e.value.kind === 'message' || e.value.kind === 'list')
                fail(e, 'a map value must be a scalar');
              const fake = new protobuf.Field('value', 2, field.type);
              if (field.resolvedType) fake.resolvedType = field.resolvedType;
              value = scalarToJson(fake, e.value, e, type.name);
            }
          } else {
            fail(e, `map entry of "${f.name}" has no field named "${e.name}"`);
          }
        }
        map[key] = value;
      }
      out[f.name] = map;
      continue;
    }
    const converted = items.map((item) => {
      if (item.kind === 'message') {
        if (!(field.resolvedType instanceof protobuf.Type)) fail(f, `field "${f.name}" is not a message`);
        return messageToJson(item, field.resolvedType);
      }
      return scalarToJson(field, item, f, type.name);
    });
    if (field.repeated) {
      out[f.name] = [...((out[f.name] as JsonValue[] | undefined) ?? []), ...converted];
    } else {
      out[f.name] = converted[converted.length - 1];
    }
  }
  const doc = type.verify(type.fromObject(out));
  if (doc) fail(msg.fields[0] ?? { line: 1, column: 1 }, doc);
  return out;
}

/**
 * Validates a parsed config.pbtxt against ModelConfig and returns its JSON form.
 * Throws PbtxtSchemaError (with line and column) for unknown fields, wrong kinds and bad enum values.
 */
export function modelConfigToJson(doc: PbMessage): JsonObject {
  return messageToJson(doc, ModelConfigType);
}

function jsonScalar(field: protobuf.Field, v: unknown, where: string): PbScalar {
  if (field.resolvedType instanceof protobuf.Enum) {
    if (typeof v === 'string') return { kind: 'ident', text: v };
    if (typeof v === 'number') return { kind: 'number', text: String(v) };
  } else if (field.type === 'string' || field.type === 'bytes') {
    if (typeof v === 'string') return { kind: 'string', value: v };
  } else if (field.type === 'bool') {
    if (typeof v === 'boolean') return { kind: 'ident', text: String(v) };
  } else if (typeof v === 'number' || (typeof v === 'string' && /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(v))) {
    return { kind: 'number', text: String(v) };
  }
  throw new PbtxtSchemaError(
    `invalid value ${JSON.stringify(v)} for field "${where}"`,
    1,
    1,
    'config override',
  );
}

function jsonMessage(obj: unknown, type: protobuf.Type, where: string): PbMessage {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    throw new PbtxtSchemaError(`expected an object for "${where}"`, 1, 1, 'config override');
  }
  const fields: PbField[] = [];
  for (const [key, value] of Object.entries(obj as Record<string, unknown>)) {
    // protobuf's JSON mapping accepts both the proto name and its lowerCamelCase form.
    const field =
      type.fields[key] ??
      type.fieldsArray.find((f) => f.name.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase()) === key);
    if (!field) {
      throw new PbtxtSchemaError(
        `message type "${type.fullName.replace(/^\./, '')}" has no field named "${key}"`,
        1,
        1,
        'config override',
      );
    }
    // protobuf's JSON mapping reads null as the field's default: as if it were absent.
    if (value === null) continue;
    const at = `${where}.${field.name}`;
    const push = (v: PbScalar | PbMessage) => fields.push({ name: field.name, value: v, line: 1, column: 1 });
    if (field instanceof protobuf.MapField) {
      for (const [k, mv] of Object.entries((value ?? {}) as Record<string, unknown>)) {
        const entry: PbField[] = [{ name: 'key', value: { kind: 'string', value: k }, line: 1, column: 1 }];
        const valueNode =
          field.resolvedType instanceof protobuf.Type
            ? jsonMessage(mv, field.resolvedType, `${at}[${k}]`)
            : jsonScalar(field, mv, `${at}[${k}]`);
        entry.push({ name: 'value', value: valueNode, line: 1, column: 1 });
        push({ kind: 'message', fields: entry });
      }
      continue;
    }
    const items = field.repeated ? (Array.isArray(value) ? value : [value]) : [value];
    for (const item of items) {
      push(
        field.resolvedType instanceof protobuf.Type
          ? jsonMessage(item, field.resolvedType, at)
          : jsonScalar(field, item, at),
      );
    }
  }
  return { kind: 'message', fields };
}

/**
 * Turns a ModelConfig in protobuf JSON form (as sent in a load's `config` parameter) into the text-format
 * tree, rejecting unknown fields as protobuf's JSON parser does. The result can be read with
 * readModelConfig or written with writePbtxt.
 */
export function modelConfigFromJson(json: unknown): PbMessage {
  const doc = jsonMessage(json, ModelConfigType, 'ModelConfig');
  modelConfigToJson(doc);
  return doc;
}
