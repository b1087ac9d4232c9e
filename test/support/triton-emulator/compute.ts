import { status } from '@grpc/grpc-js';
import {
  CONTENTS_FIELD,
  CONTENTS_FIELD_TYPE,
  ELEMENT_SIZE,
  configTypeToDatatype,
  contentsToRaw,
  deserializeBytesElements,
  elementCount,
  isDatatype,
  serializeBytesElements,
  valuesToRaw,
  type ContentsField,
  type Datatype,
  type TensorValue,
} from '../../../src/inference/datatypes';
import type { TensorConfig } from '../../../src/model-config';
import { EMULATOR_PARAMETERS, EmulatorError, type LoadedConfig } from './model-lifecycle';
import { dimsList, nameList, requestIdPrefix, texts } from './texts';

/** ModelInferRequest as grpc-js hands it over (int64 as strings, proto3 defaults filled in). */
export interface WireInferRequest {
  model_name: string;
  model_version: string;
  id: string;
  inputs: {
    name: string;
    datatype: string;
    shape: string[];
    contents?: Record<string, unknown[]> | null;
  }[];
  outputs: { name: string }[];
  raw_input_contents: Buffer[];
}

export interface Tensor {
  datatype: Datatype;
  shape: number[];
  raw: Buffer;
}

const invalid = (message: string) => new EmulatorError(status.INVALID_ARGUMENT, message);

function usedContentsField(
  contents: Record<string, unknown[]> | null | undefined,
): ContentsField | undefined {
  if (!contents) return undefined;
  for (const [k, v] of Object.entries(contents))
    if (Array.isArray(v) && v.length > 0) return k as ContentsField;
  return undefined;
}

/**
 * Validates a request against the model config in the order Triton does (gRPC front end first, then
 * core's Normalize) and returns the input tensors as raw bytes. Every message is Triton's.
 */
export function prepareInputs(model: string, cfg: LoadedConfig, req: WireInferRequest): Map<string, Tensor> {
  const prefix = requestIdPrefix(req.id);
  const summary = cfg.summary;
  const seenIn = new Set<string>();
  for (const i of req.inputs) {
    if (seenIn.has(i.name)) throw invalid(prefix + texts.duplicateInput(i.name));
    seenIn.add(i.name);
  }
  const seenOut = new Set<string>();
  for (const o of req.outputs) {
    if (seenOut.has(o.name)) throw invalid(prefix + texts.duplicateOutput(o.name));
    seenOut.add(o.name);
  }

  // gRPC front end (infer_handler.cc): where each input's data comes from.
  const useRaw = req.raw_input_contents.length > 0;
  const data: Buffer[] = [];
  req.inputs.forEach((input, idx) => {
    const field = usedContentsField(input.contents);
    if (useRaw && field) throw invalid(texts.contentsWithRaw(input.name, model));
    if (field) {
      const declared = isDatatype(input.datatype) ? input.datatype : undefined;
      if (!declared || CONTENTS_FIELD[declared] !== field) {
        throw invalid(
          texts.contentsTypeMismatch(input.name, model, CONTENTS_FIELD_TYPE[field], input.datatype),
        );
      }
      data.push(contentsToRaw(declared, input.contents as never));
      return;
    }
    const raw = req.raw_input_contents[idx];
    if (raw === undefined) throw invalid(texts.missingData(input.name, model));
    data.push(raw);
  });

  // core InferenceRequest::Normalize.
  for (const o of req.outputs) {
    if (!summary.outputs.some((c) => c.name === o.name)) throw invalid(texts.unexpectedOutput(o.name, model));
  }
  const required = summary.inputs.filter((i) => !i.optional);
  const n = summary.inputs.length;
  const m = req.inputs.length;
  if (m < required.length || m > n) {
    const got = req.inputs.map((i) => i.name);
    const missing = required.map((i) => i.name).filter((x) => !got.includes(x));
    // Quirk kept from core: with too many inputs and none missing the list renders as a bare ']'.
    const missingText = missing.length === 0 ? ']' : nameList(missing);
    throw invalid(
      prefix +
        (required.length === n
          ? texts.inputCount(n, m, model, nameList(got), missingText)
          : texts.inputCountOptional(required.length, n, m, model, nameList(got), missingText)),
    );
  }
  const configs: TensorConfig[] = [];
  const batching = summary.maxBatchSize > 0;
  let batch: number | undefined;
  req.inputs.forEach((input) => {
    const c = summary.inputs.find((x) => x.name === input.name);
    if (!c) throw invalid(texts.unexpectedInput(input.name, model));
    configs.push(c);
    if (batching) {
      if (input.shape.length === 0) throw invalid(prefix + texts.noBatchShape(input.name, model));
      const b = Number(input.shape[0]);
      if (batch !== undefined && b !== batch) throw invalid(prefix + texts.batchMismatch(input.name, model));
      batch = b;
    }
  });
  if (batching && batch !== undefined && batch > summary.maxBatchSize) {
    throw invalid(prefix + texts.batchTooLarge(summary.maxBatchSize, model));
  }

  const tensors = new Map<string, Tensor>();
  req.inputs.forEach((input, idx) => {
    const c = configs[idx];
    const expected = configTypeToDatatype(c.dataType);
    const shown = isDatatype(input.datatype) ? input.datatype : '<invalid>';
    if (expected === undefined || input.datatype !== expected) {
      throw invalid(prefix + texts.datatypeMismatch(input.name, shown, model, expected ?? '<invalid>'));
    }
    const shape = input.shape.map(Number);
    if (shape.some((d) => d < 0))
      throw invalid(prefix + texts.unspecifiedDims(input.name, model, dimsList(shape)));
    const dims = batching ? [-1, ...c.dims] : c.dims;
    const fits = dims.length === shape.length && dims.every((d, i) => d === -1 || d === shape[i]);
    if (!fits) {
      throw invalid(
        prefix + texts.shapeMismatch(input.name, model, dimsList(dims), dimsList(shape), batching),
      );
    }
    const raw = data[idx];
    const count = elementCount(shape);
    if (expected === 'BYTES') {
      const els = deserializeBytesElements(raw);
      // Triton counts string elements for BYTES; the wording here is the emulator's own.
      if (!els || els.length !== count) {
        throw invalid(prefix + texts.byteSizeMismatch(input.name, model, count, els ? els.length : -1));
      }
    } else if (raw.length !== count * ELEMENT_SIZE[expected]) {
      throw invalid(
        prefix + texts.byteSizeMismatch(input.name, model, count * ELEMENT_SIZE[expected], raw.length),
      );
    }
    tensors.set(input.name, { datatype: expected, shape, raw });
  });
  return tensors;
}

export type Behaviour = 'identity' | 'classifier' | 'pattern';

/** The emulated model's function: declared in the config, else chosen from its inputs and outputs. */
export function behaviourOf(cfg: LoadedConfig): Behaviour {
  const declared = cfg.summary.parameters[EMULATOR_PARAMETERS.behaviour];
  if (declared === 'identity' || declared === 'classifier' || declared === 'pattern') return declared;
  const { inputs, outputs } = cfg.summary;
  if (
    inputs.length === outputs.length &&
    inputs.every(
      (inp, i) =>
        inp.dataType === outputs[i].dataType &&
        inp.dims.length === outputs[i].dims.length &&
        inp.dims.every((d, j) => d === outputs[i].dims[j]),
    )
  ) {
    return 'identity';
  }
  if (
    inputs.length === 1 &&
    outputs.length === 1 &&
    inputs[0].dataType === 'TYPE_FP32' &&
    outputs[0].dataType === 'TYPE_FP32' &&
    outputs[0].dims.length === 1
  ) {
    return 'classifier';
  }
  return 'pattern';
}

/**
 * The documented classifier function, a stand-in for ResNet-50 that tests can check exactly:
 * for each batch item with elements x[0..n), mean = (x[0] + ... + x[n-1]) / n summed in float64 in
 * order, and output[k] = float32(x[k mod n] + mean).
 */
export function classifierScores(item: Float32Array, classes: number): Float32Array {
  let sum = 0;
  for (let i = 0; i < item.length; i++) sum += item[i];
  const mean = item.length > 0 ? sum / item.length : 0;
  const out = new Float32Array(classes);
  for (let k = 0; k < classes; k++) out[k] = (item.length > 0 ? item[k % item.length] : 0) + mean;
  return out;
}

/** The documented `pattern` function: element i of every output is i mod 128 (BOOL: odd i; BYTES: "i"). */
export function patternValues(datatype: Datatype, count: number): TensorValue[] {
  const values: TensorValue[] = new Array(count);
  for (let i = 0; i < count; i++) {
    if (datatype === 'BOOL') values[i] = i % 2 === 1;
    else if (datatype === 'BYTES') values[i] = Buffer.from(String(i));
    else values[i] = i % 128;
  }
  return values;
}

/** Runs a (non-ensemble) model on validated inputs; returns every configured output, in config order. */
export function runModel(cfg: LoadedConfig, inputs: Map<string, Tensor>): Map<string, Tensor> {
  const { summary } = cfg;
  const out = new Map<string, Tensor>();
  const behaviour = behaviourOf(cfg);
  const ordered = summary.inputs.map((c) => inputs.get(c.name));
  const first = [...inputs.values()][0];
  const batch = summary.maxBatchSize > 0 && first ? first.shape[0] : undefined;
  summary.outputs.forEach((oc, idx) => {
    const datatype = configTypeToDatatype(oc.dataType) ?? 'FP32';
    const source = ordered[idx];
    if (behaviour === 'identity' && source) {
      out.set(oc.name, { datatype, shape: [...source.shape], raw: source.raw });
      return;
    }
    if (behaviour === 'classifier' && first && datatype === 'FP32') {
      const classes = oc.dims[0] > 0 ? oc.dims[0] : 1;
      const items = batch ?? 1;
      const x = new Float32Array(
        first.raw.buffer.slice(first.raw.byteOffset, first.raw.byteOffset + first.raw.length),
      );
      const per = items > 0 ? x.length / items : 0;
      const result = new Float32Array(items * classes);
      for (let b = 0; b < items; b++)
        result.set(classifierScores(x.subarray(b * per, (b + 1) * per), classes), b * classes);
      out.set(oc.name, {
        datatype,
        shape: batch !== undefined ? [items, classes] : [classes],
        raw: Buffer.from(result.buffer, result.byteOffset, result.byteLength),
      });
      return;
    }
    const dims = oc.dims.map((d) => (d < 0 ? 1 : d));
    const shape = batch !== undefined ? [batch, ...dims] : dims;
    const values = patternValues(datatype, elementCount(shape));
    out.set(oc.name, {
      datatype,
      shape,
      raw: datatype === 'BYTES' ? serializeBytesElements(values as Buffer[]) : valuesToRaw(datatype, values),
    });
  });
  return out;
}
