/**
 * The protobuf text format, as used by Triton's `config.pbtxt`.
 *
 * A parser into a small ordered tree (so a config can be edited and written back without losing fields
 * the agent does not understand), a writer, and the few typed reads and edits the agent needs. Comments
 * are not kept: the writer emits canonical text. Edits go through the tree, never through regular
 * expressions over the file.
 */

/** A scalar as written: numbers and identifiers keep their text so int64 values never lose precision. */
export type PbScalar =
  | { readonly kind: 'string'; readonly value: string }
  | { readonly kind: 'number'; readonly text: string }
  | { readonly kind: 'ident'; readonly text: string };

export interface PbField {
  readonly name: string;
  /** A repeated field written as `name: [a, b]` keeps the list form; otherwise one value per occurrence. */
  value: PbScalar | PbMessage | PbList;
  readonly line: number;
  readonly column: number;
}

export interface PbList {
  readonly kind: 'list';
  readonly items: (PbScalar | PbMessage)[];
}

export interface PbMessage {
  readonly kind: 'message';
  readonly fields: PbField[];
}

export class PbtxtSyntaxError extends Error {
  constructor(
    readonly detail: string,
    readonly line: number,
    readonly column: number,
    readonly source = 'config.pbtxt',
  ) {
    super(`${source}:${line}:${column}: ${detail}`);
    this.name = 'PbtxtSyntaxError';
  }
}

type TokenKind = 'ident' | 'number' | 'string' | 'punct' | 'eof';
interface Token {
  kind: TokenKind;
  text: string;
  /** Decoded value of a string token. */
  value?: string;
  line: number;
  column: number;
}

const SIMPLE_ESCAPES: Record<string, number> = {
  n: 0x0a,
  r: 0x0d,
  t: 0x09,
  v: 0x0b,
  f: 0x0c,
  a: 0x07,
  b: 0x08,
  '\\': 0x5c,
  "'": 0x27,
  '"': 0x22,
  '?': 0x3f,
};

class Lexer {
  private pos = 0;
  private line = 1;
  private col = 1;

  constructor(
    private readonly text: string,
    private readonly source: string,
  ) {}

  private fail(detail: string, line = this.line, column = this.col): never {
    throw new PbtxtSyntaxError(detail, line, column, this.source);
  }

  private advance(n = 1): void {
    for (let i = 0; i < n; i++) {
      if (this.text[this.pos] === '\n') {
        this.line++;
        this.col = 1;
      } else {
        this.col++;
      }
      this.pos++;
    }
  }

  private skipSpaceAndComments(): void {
    for (;;) {
      const c = this.text[this.pos];
      if (c === undefined) return;
      if (c === '#') {
        while (this.pos < this.text.length && this.text[this.pos] !== '\n') this.advance();
      } else if (c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v') {
        this.advance();
      } else {
        return;
      }
    }
  }

  next(): Token {
    this.skipSpaceAndComments();
    const line = this.line;
    const column = this.col;
    const c = this.text[this.pos];
    if (c === undefined) return { kind: 'eof', text: '', line, column };
    if ('{}[]<>:,;'.includes(c)) {
      this.advance();
      return { kind: 'punct', text: c, line, column };
    }
    if (c === '"' || c === "'") return this.readString(line, column);
    if (/[0-9.+-]/.test(c)) {
      const m =
        /^[+-]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[fF]?|inf(?:inity)?|nan)/i.exec(
          this.text.slice(this.pos),
        );
      if (!m || m[0] === '-' || m[0] === '+') this.fail(`unexpected character '${c}'`);
      this.advance(m[0].length);
      return { kind: 'number', text: m[0], line, column };
    }
    if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_.]*/.exec(this.text.slice(this.pos));
      const text = m ? m[0] : c;
      this.advance(text.length);
      return { kind: 'ident', text, line, column };
    }
    return this.fail(`unexpected character '${c}'`);
  }

  /** Reads one quoted string; adjacent strings are concatenated by the parser. */
  private readString(line: number, column: number): Token {
    const quote = this.text[this.pos];
    this.advance();
    const bytes: number[] = [];
    const start = this.pos;
    for (;;) {
      const c = this.text[this.pos];
      if (c === undefined || c === '\n') this.fail('unterminated string', line, column);
      if (c === quote) {
        this.advance();
        break;
      }
      if (c === '\\') {
        const e = this.text[this.pos + 1];
        if (e === undefined) this.fail('unterminated string', line, column);
        if (e in SIMPLE_ESCAPES) {
          bytes.push(SIMPLE_ESCAPES[e]);
          this.advance(2);
        } else if (e === 'x' || e === 'X') {
          const m = /^[0-9a-fA-F]{1,2}/.exec(this.text.slice(this.pos + 2));
          if (!m) this.fail('invalid \\x escape');
          bytes.push(parseInt(m[0], 16));
          this.advance(2 + m[0].length);
        } else if (/[0-7]/.test(e)) {
          const m = /^[0-7]{1,3}/.exec(this.text.slice(this.pos + 1));
          const v = parseInt((m as RegExpExecArray)[0], 8);
          if (v > 255) this.fail('octal escape out of range');
          bytes.push(v);
          this.advance(1 + (m as RegExpExecArray)[0].length);
        } else if (e === 'u' || e === 'U') {
          const len = e === 'u' ? 4 : 8;
          const hex = this.text.slice(this.pos + 2, this.pos + 2 + len);
          if (!new RegExp(`^[0-9a-fA-F]{${len}}$`).test(hex)) this.fail(`invalid \\${e} escape`);
          for (const b of Buffer.from(String.fromCodePoint(parseInt(hex, 16)), 'utf8')) bytes.push(b);
          this.advance(2 + len);
        } else {
          this.fail(`invalid escape '\\${e}'`);
        }
      } else {
        const cp = this.text.codePointAt(this.pos) as number;
        const ch = String.fromCodePoint(cp);
        for (const b of Buffer.from(ch, 'utf8')) bytes.push(b);
        this.advance(ch.length);
      }
    }
    const text = this.text.slice(start - 1, this.pos);
    return { kind: 'string', text, value: Buffer.from(bytes).toString('utf8'), line, column };
  }
}

/** Deepest message nesting accepted: protobuf's own text parser stops at 100 as well. */
export const MAX_PBTXT_DEPTH = 100;

class Parser {
  private tok: Token;
  private readonly lexer: Lexer;
  private depth = 0;

  constructor(
    text: string,
    private readonly source: string,
  ) {
    this.lexer = new Lexer(text, source);
    this.tok = this.lexer.next();
  }

  private fail(detail: string, tok: Token = this.tok): never {
    throw new PbtxtSyntaxError(detail, tok.line, tok.column, this.source);
  }

  private shift(): Token {
    const t = this.tok;
    this.tok = this.lexer.next();
    return t;
  }

  private isPunct(p: string): boolean {
    return this.tok.kind === 'punct' && this.tok.text === p;
  }

  private describe(t: Token): string {
    return t.kind === 'eof' ? 'end of input' : `'${t.text}'`;
  }

  parseDocument(): PbMessage {
    const msg = this.parseFields(null);
    if (this.tok.kind !== 'eof') this.fail(`expected a field name, got ${this.describe(this.tok)}`);
    return msg;
  }

  private parseFields(close: string | null): PbMessage {
    const fields: PbField[] = [];
    for (;;) {
      if (close !== null && this.isPunct(close)) return { kind: 'message', fields };
      if (this.tok.kind === 'eof') {
        if (close === null) return { kind: 'message', fields };
        this.fail(`expected '${close}', got end of input`);
      }
      if (this.tok.kind === 'punct' && this.tok.text === '[') {
        this.fail('extension and Any fields ([...]) are not supported in config.pbtxt');
      }
      if (this.tok.kind !== 'ident') this.fail(`expected a field name, got ${this.describe(this.tok)}`);
      const nameTok = this.shift();
      const field: PbField = {
        name: nameTok.text,
        value: this.parseFieldValue(nameTok),
        line: nameTok.line,
        column: nameTok.column,
      };
      fields.push(field);
      if (this.isPunct(',') || this.isPunct(';')) this.shift();
    }
  }

  private parseFieldValue(nameTok: Token): PbScalar | PbMessage | PbList {
    let colon = false;
    if (this.isPunct(':')) {
      this.shift();
      colon = true;
    }
    if (this.isPunct('{') || this.isPunct('<')) return this.parseMessage();
    // `field [ {...} ]` without a colon is allowed for message lists, as protobuf's own parser allows it.
    if (this.isPunct('[')) return this.parseList();
    if (!colon)
      this.fail(`expected ':' or '{' after field name '${nameTok.text}', got ${this.describe(this.tok)}`);
    return this.parseScalar(nameTok.text);
  }

  private parseMessage(): PbMessage {
    // Bounded, so a hostile config cannot exhaust the stack.
    if (this.depth >= MAX_PBTXT_DEPTH) this.fail(`messages are nested more than ${MAX_PBTXT_DEPTH} deep`);
    this.depth++;
    const open = this.shift();
    const close = open.text === '{' ? '}' : '>';
    const msg = this.parseFields(close);
    this.shift();
    this.depth--;
    return msg;
  }

  private parseList(): PbList {
    this.shift();
    const items: (PbScalar | PbMessage)[] = [];
    if (this.isPunct(']')) {
      this.shift();
      return { kind: 'list', items };
    }
    for (;;) {
      items.push(
        this.isPunct('{') || this.isPunct('<') ? this.parseMessage() : this.parseScalar('list item'),
      );
      if (this.isPunct(',')) {
        this.shift();
        continue;
      }
      if (this.isPunct(']')) {
        this.shift();
        return { kind: 'list', items };
      }
      this.fail(`expected ',' or ']' in list, got ${this.describe(this.tok)}`);
    }
  }

  private parseScalar(what: string): PbScalar {
    const t = this.tok;
    if (t.kind === 'string') {
      let value = '';
      while (this.tok.kind === 'string') value += this.shift().value as string;
      return { kind: 'string', value };
    }
    if (t.kind === 'number') {
      this.shift();
      return { kind: 'number', text: t.text };
    }
    if (t.kind === 'ident') {
      this.shift();
      return { kind: 'ident', text: t.text };
    }
    if (t.kind === 'punct' && t.text === '-') this.fail('expected a number after -');
    return this.fail(`expected a value for '${what}', got ${this.describe(t)}`);
  }
}

/** Parses protobuf text format. Throws PbtxtSyntaxError with line and column. */
export function parsePbtxt(text: string, source = 'config.pbtxt'): PbMessage {
  return new Parser(text, source).parseDocument();
}

function escapeString(s: string): string {
  let out = '"';
  for (const b of Buffer.from(s, 'utf8')) {
    if (b === 0x22) out += '\\"';
    else if (b === 0x5c) out += '\\\\';
    else if (b === 0x0a) out += '\\n';
    else if (b === 0x0d) out += '\\r';
    else if (b === 0x09) out += '\\t';
    else if (b < 0x20 || b === 0x7f) out += '\\' + b.toString(8).padStart(3, '0');
    else out += String.fromCharCode(b);
  }
  // Multi-byte UTF-8 sequences were emitted byte by byte above; re-decode them as text.
  return Buffer.from(out + '"', 'latin1').toString('utf8');
}

function writeScalar(v: PbScalar): string {
  return v.kind === 'string' ? escapeString(v.value) : v.text;
}

function writeValue(v: PbScalar | PbMessage | PbList, indent: string): string {
  if (v.kind === 'message') return `{\n${writeFields(v, indent + '  ')}${indent}}`;
  if (v.kind === 'list') {
    if (v.items.some((i) => i.kind === 'message')) {
      const inner = v.items.map((i) => indent + '  ' + writeValue(i, indent + '  ')).join(',\n');
      return `[\n${inner}\n${indent}]`;
    }
    return `[${v.items.map((i) => writeValue(i, indent)).join(', ')}]`;
  }
  return writeScalar(v);
}

function writeFields(msg: PbMessage, indent: string): string {
  let out = '';
  for (const f of msg.fields) {
    const sep = f.value.kind === 'message' ? ' ' : ': ';
    out += `${indent}${f.name}${sep}${writeValue(f.value, indent)}\n`;
  }
  return out;
}

/** Writes a tree back as canonical text format (two-space indent, one field per line). */
export function writePbtxt(msg: PbMessage): string {
  return writeFields(msg, '');
}

// ---------------------------------------------------------------------------------------------------
// Typed reads and the edits the agent needs.

export interface TensorConfig {
  name: string;
  /** Model-config type name, e.g. `TYPE_FP32`. */
  dataType: string;
  dims: number[];
  /** Shape used when the input is fed to the model, if the config reshapes it. */
  reshape?: number[];
  optional: boolean;
}

export interface EnsembleStep {
  modelName: string;
  modelVersion: number;
  inputMap: Record<string, string>;
  outputMap: Record<string, string>;
}

export interface ModelConfigSummary {
  name?: string;
  platform?: string;
  backend?: string;
  maxBatchSize: number;
  inputs: TensorConfig[];
  outputs: TensorConfig[];
  ensembleSteps: EnsembleStep[];
  defaultModelFilename?: string;
  /** `parameters { key: k value { string_value: v } }` entries. */
  parameters: Record<string, string>;
  versionPolicy:
    { kind: 'latest'; numVersions: number } | { kind: 'all' } | { kind: 'specific'; versions: number[] };
}

export class PbtxtSchemaError extends PbtxtSyntaxError {
  constructor(detail: string, line: number, column: number, source?: string) {
    super(detail, line, column, source);
    this.name = 'PbtxtSchemaError';
  }
}

/** All values of a field, flattening list syntax. */
export function fieldValues(msg: PbMessage, name: string): (PbScalar | PbMessage)[] {
  const out: (PbScalar | PbMessage)[] = [];
  for (const f of msg.fields) {
    if (f.name !== name) continue;
    if (f.value.kind === 'list') out.push(...f.value.items);
    else out.push(f.value);
  }
  return out;
}

function fieldOf(msg: PbMessage, name: string): PbField | undefined {
  for (let i = msg.fields.length - 1; i >= 0; i--) if (msg.fields[i].name === name) return msg.fields[i];
  return undefined;
}

function where(msg: PbMessage, name: string): [number, number] {
  const f = fieldOf(msg, name);
  return f ? [f.line, f.column] : [1, 1];
}

function schemaFail(msg: PbMessage, name: string, detail: string): never {
  const [line, col] = where(msg, name);
  throw new PbtxtSchemaError(detail, line, col);
}

/** The last value of a singular string field (protobuf text format lets the last occurrence win). */
export function stringField(msg: PbMessage, name: string): string | undefined {
  const vs = fieldValues(msg, name);
  const v = vs[vs.length - 1];
  if (v === undefined) return undefined;
  if (v.kind !== 'string') schemaFail(msg, name, `field '${name}' must be a string`);
  return v.value;
}

function parseIntText(text: string): number | undefined {
  if (!/^[+-]?(\d+|0[xX][0-9a-fA-F]+)$/.test(text)) return undefined;
  const neg = text.startsWith('-');
  const body = text.replace(/^[+-]/, '');
  const big = BigInt(body);
  const v = neg ? -big : big;
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) return undefined;
  return Number(v);
}

export function intField(msg: PbMessage, name: string): number | undefined {
  const vs = fieldValues(msg, name);
  const v = vs[vs.length - 1];
  if (v === undefined) return undefined;
  const n = v.kind === 'number' ? parseIntText(v.text) : undefined;
  if (n === undefined) schemaFail(msg, name, `field '${name}' must be an integer`);
  return n;
}

/**
 * The largest batch the config's `model_warmup` samples run (0: no warmup). Triton runs them on every
 * instance before it serves (core backend_model_instance.cc `WarmUp`), so memory that grows at the first
 * inference has grown by the time the load answers. A sample's `batch_size` 0 runs one request.
 */
export function warmupBatch(doc: PbMessage): number {
  let largest = 0;
  for (const w of fieldValues(doc, 'model_warmup')) {
    if (w.kind !== 'message') continue;
    const v = fieldValues(w, 'batch_size').at(-1);
    const batch = v?.kind === 'number' ? (parseIntText(v.text) ?? 0) : 0;
    largest = Math.max(largest, batch, 1);
  }
  return largest;
}

function intList(msg: PbMessage, name: string): number[] {
  return fieldValues(msg, name).map((v) => {
    const n = v.kind === 'number' ? parseIntText(v.text) : undefined;
    if (n === undefined) schemaFail(msg, name, `field '${name}' must hold integers`);
    return n;
  });
}

function identField(msg: PbMessage, name: string): string | undefined {
  const vs = fieldValues(msg, name);
  const v = vs[vs.length - 1];
  if (v === undefined) return undefined;
  if (v.kind !== 'ident') schemaFail(msg, name, `field '${name}' must be an enum name`);
  return v.text;
}

function boolField(msg: PbMessage, name: string): boolean {
  const vs = fieldValues(msg, name);
  const v = vs[vs.length - 1];
  if (v === undefined) return false;
  if (v.kind === 'ident' && (v.text === 'true' || v.text === 'True' || v.text === 't')) return true;
  if (v.kind === 'ident' && (v.text === 'false' || v.text === 'False' || v.text === 'f')) return false;
  if (v.kind === 'number' && (v.text === '1' || v.text === '0')) return v.text === '1';
  return schemaFail(msg, name, `field '${name}' must be true or false`);
}

function messages(msg: PbMessage, name: string): PbMessage[] {
  return fieldValues(msg, name).map((v) => {
    if (v.kind !== 'message') schemaFail(msg, name, `field '${name}' must be a message`);
    return v;
  });
}

function lastMessage(msg: PbMessage, name: string): PbMessage | undefined {
  const ms = messages(msg, name);
  return ms[ms.length - 1];
}

/** Reads a text-format map<string,string> (`name { key: "k" value: "v" }`, repeated). */
function stringMap(msg: PbMessage, name: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of messages(msg, name))
    out[stringField(entry, 'key') ?? ''] = stringField(entry, 'value') ?? '';
  return out;
}

function readTensor(m: PbMessage): TensorConfig {
  const name = stringField(m, 'name');
  if (name === undefined || name === '') schemaFail(m, 'name', 'every input and output needs a name');
  const reshapeMsg = lastMessage(m, 'reshape');
  const t: TensorConfig = {
    name,
    dataType: identField(m, 'data_type') ?? 'TYPE_INVALID',
    dims: intList(m, 'dims'),
    optional: boolField(m, 'optional'),
  };
  if (reshapeMsg) t.reshape = intList(reshapeMsg, 'shape');
  return t;
}

/** Reads the parts of a ModelConfig the agent and the emulator use. */
export function readModelConfig(doc: PbMessage): ModelConfigSummary {
  const ensemble = lastMessage(doc, 'ensemble_scheduling');
  const parameters: Record<string, string> = {};
  for (const p of messages(doc, 'parameters')) {
    const value = lastMessage(p, 'value');
    parameters[stringField(p, 'key') ?? ''] = value ? (stringField(value, 'string_value') ?? '') : '';
  }
  let versionPolicy: ModelConfigSummary['versionPolicy'] = { kind: 'latest', numVersions: 1 };
  const vp = lastMessage(doc, 'version_policy');
  if (vp) {
    const latest = lastMessage(vp, 'latest');
    const specific = lastMessage(vp, 'specific');
    if (specific) versionPolicy = { kind: 'specific', versions: intList(specific, 'versions') };
    else if (fieldOf(vp, 'all')) versionPolicy = { kind: 'all' };
    else if (latest) versionPolicy = { kind: 'latest', numVersions: intField(latest, 'num_versions') ?? 1 };
  }
  const summary: ModelConfigSummary = {
    maxBatchSize: intField(doc, 'max_batch_size') ?? 0,
    inputs: messages(doc, 'input').map(readTensor),
    outputs: messages(doc, 'output').map(readTensor),
    ensembleSteps: ensemble
      ? messages(ensemble, 'step').map((s) => ({
          modelName: stringField(s, 'model_name') ?? '',
          modelVersion: intField(s, 'model_version') ?? -1,
          inputMap: stringMap(s, 'input_map'),
          outputMap: stringMap(s, 'output_map'),
        }))
      : [],
    parameters,
    versionPolicy,
  };
  const name = stringField(doc, 'name');
  const platform = stringField(doc, 'platform');
  const backend = stringField(doc, 'backend');
  const dmf = stringField(doc, 'default_model_filename');
  if (name !== undefined) summary.name = name;
  if (platform !== undefined) summary.platform = platform;
  if (backend !== undefined) summary.backend = backend;
  if (dmf !== undefined) summary.defaultModelFilename = dmf;
  return summary;
}

/** True when the config describes an ensemble (by platform or backend, unlike a regex on the file). */
export function isEnsemble(summary: Pick<ModelConfigSummary, 'platform' | 'backend'>): boolean {
  return summary.platform === 'ensemble' || summary.backend === 'ensemble';
}

/** Sets the top-level `name`, replacing every occurrence (the first position is kept). */
export function setModelName(doc: PbMessage, name: string): PbMessage {
  const fields: PbField[] = [];
  let placed = false;
  for (const f of doc.fields) {
    if (f.name !== 'name') {
      fields.push(f);
    } else if (!placed) {
      fields.push({ ...f, value: { kind: 'string', value: name } });
      placed = true;
    }
  }
  if (!placed) fields.unshift({ name: 'name', value: { kind: 'string', value: name }, line: 0, column: 0 });
  return { kind: 'message', fields };
}

/**
 * Rewrites `ensemble_scheduling.step[].model_name` through `rename` (names it does not map stay as they
 * are). Returns a new tree; the input is not changed.
 */
export function renameEnsembleSteps(doc: PbMessage, rename: (name: string) => string | undefined): PbMessage {
  const mapStep = (step: PbMessage): PbMessage => ({
    kind: 'message',
    fields: step.fields.map((f) => {
      if (f.name !== 'model_name' || f.value.kind !== 'string') return f;
      const to = rename(f.value.value);
      return to === undefined ? f : { ...f, value: { kind: 'string', value: to } };
    }),
  });
  const mapEnsemble = (ens: PbMessage): PbMessage => ({
    kind: 'message',
    fields: ens.fields.map((f) => {
      if (f.name !== 'step') return f;
      if (f.value.kind === 'message') return { ...f, value: mapStep(f.value) };
      if (f.value.kind === 'list') {
        return {
          ...f,
          value: { kind: 'list', items: f.value.items.map((i) => (i.kind === 'message' ? mapStep(i) : i)) },
        };
      }
      return f;
    }),
  });
  return {
    kind: 'message',
    fields: doc.fields.map((f) =>
      f.name === 'ensemble_scheduling' && f.value.kind === 'message'
        ? { ...f, value: mapEnsemble(f.value) }
        : f,
    ),
  };
}

/** One `instance_group` of a model config, as far as placement needs it. */
export interface InstanceGroup {
  /** KIND_AUTO (the default), KIND_GPU, KIND_CPU or KIND_MODEL. */
  kind: string;
  count: number;
  /** GPU indices named by the group (empty: every GPU). */
  gpus: number[];
}

/** The `instance_group`s of a config (none: Triton puts one instance on every GPU, or on the CPU without one). */
export function instanceGroups(doc: PbMessage): InstanceGroup[] {
  return fieldValues(doc, 'instance_group')
    .filter((v): v is PbMessage => v.kind === 'message')
    .map((g) => {
      const kind = fieldValues(g, 'kind').at(-1);
      const count = fieldValues(g, 'count').at(-1);
      return {
        kind: kind?.kind === 'ident' ? kind.text : 'KIND_AUTO',
        count: count?.kind === 'number' ? Number(count.text) : 1,
        gpus: fieldValues(g, 'gpus').flatMap((v) => (v.kind === 'number' ? [Number(v.text)] : [])),
      };
    });
}

/** A scalar field of a group message. */
const scalarField = (name: string, value: PbScalar): PbField => ({ name, value, line: 0, column: 0 });

/** The instance-group messages of a config, in order, whether written one per field or as a list. */
function groupMessages(doc: PbMessage): PbMessage[] {
  return fieldValues(doc, 'instance_group').filter((v): v is PbMessage => v.kind === 'message');
}

function groupKind(g: PbMessage): string {
  const kind = fieldValues(g, 'kind').at(-1);
  return kind?.kind === 'ident' ? kind.text : 'KIND_AUTO';
}

/**
 * Places a model's GPU instances on `gpus`, one `instance_group` per GPU: each GPU (or AUTO) group of the
 * config is repeated on every one of `gpus` as KIND_GPU with that single GPU, keeping its count and its
 * other fields (a named group gets `_gpu<d>` added, so instance names stay unique); CPU and MODEL groups
 * stay as they are; no groups at all counts as one instance. One group per GPU is what lets Triton keep
 * the instances on a GPU that stays when the list changes: it reuses an instance only when its whole group
 * config but name and count (the `gpus` list included) and its device are unchanged (core
 * backend_model.cc PrepareInstances, backend_model_instance.h Signature). Returns a new tree.
 */
export function placeOnGpus(doc: PbMessage, gpus: readonly number[]): PbMessage {
  const all = groupMessages(doc);
  const onGpu = all.filter((g) => groupKind(g) === 'KIND_GPU' || groupKind(g) === 'KIND_AUTO');
  const templates: PbMessage[] =
    all.length === 0
      ? [{ kind: 'message', fields: [scalarField('count', { kind: 'number', text: '1' })] }]
      : onGpu;
  // Groups may be written one per field or as a list (`instance_group [ {...}, {...} ]`).
  const cpuOrModel = (v: PbScalar | PbMessage): boolean =>
    v.kind === 'message' && (groupKind(v) === 'KIND_CPU' || groupKind(v) === 'KIND_MODEL');
  const kept: PbField[] = [];
  for (const f of doc.fields) {
    if (f.name !== 'instance_group') kept.push(f);
    else if (f.value.kind === 'list') {
      const items = f.value.items.filter(cpuOrModel);
      if (items.length > 0) kept.push({ ...f, value: { kind: 'list', items } });
    } else if (cpuOrModel(f.value)) kept.push(f);
  }
  const placed: PbField[] = [];
  for (const d of gpus) {
    for (const t of templates) {
      const fields: PbField[] = [];
      let count: PbField | undefined;
      for (const f of t.fields) {
        if (f.name === 'kind' || f.name === 'gpus') continue;
        if (f.name === 'count') count = f;
        else if (f.name === 'name' && f.value.kind === 'string')
          fields.push({ ...f, value: { kind: 'string', value: `${f.value.value}_gpu${d}` } });
        else fields.push(f);
      }
      placed.push({
        name: 'instance_group',
        value: {
          kind: 'message',
          fields: [
            count ?? scalarField('count', { kind: 'number', text: '1' }),
            scalarField('kind', { kind: 'ident', text: 'KIND_GPU' }),
            {
              name: 'gpus',
              value: { kind: 'list', items: [{ kind: 'number', text: String(d) }] },
              line: 0,
              column: 0,
            },
            ...fields,
          ],
        },
        line: 0,
        column: 0,
      });
    }
  }
  return { kind: 'message', fields: [...kept, ...placed] };
}

/**
 * The GPUs on which Triton keeps the instances it has when a config's instance groups change from
 * `before` to `after` (an update in place): those of GPU groups in `after` that name their GPUs and have
 * an equivalent group in `before` (the same fields but `name` and `count`). A group that names no GPUs
 * stands for all of them, which this cannot judge: it keeps nothing here.
 */
export function keptGpus(before: PbMessage, after: PbMessage): Set<number> {
  const signature = (g: PbMessage) =>
    writePbtxt({ kind: 'message', fields: g.fields.filter((f) => f.name !== 'name' && f.name !== 'count') });
  const gpuGroups = (doc: PbMessage) =>
    groupMessages(doc).filter((g) => groupKind(g) === 'KIND_GPU' && fieldValues(g, 'gpus').length > 0);
  const old = new Set(gpuGroups(before).map(signature));
  const kept = new Set<number>();
  for (const g of gpuGroups(after))
    if (old.has(signature(g)))
      for (const v of fieldValues(g, 'gpus')) if (v.kind === 'number') kept.add(Number(v.text));
  return kept;
}
