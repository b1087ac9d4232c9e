import * as fs from 'node:fs';
import * as path from 'node:path';
import * as protobuf from 'protobufjs';
import { GRPC_SERVICE_PROTO, PROTO_DIR } from '../../src/model-config';

/**
 * Every line of the reference list (one per field, enum value and rpc of Triton's protos) must be
 * reproduced exactly from our protos, and our protos must not declare anything the list lacks.
 */
const facts = fs
  .readFileSync(path.join(__dirname, '..', 'fixtures', 'triton-proto-facts.txt'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'));

function loadRoot(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => path.join(PROTO_DIR, path.basename(target));
  root.loadSync(GRPC_SERVICE_PROTO, { keepCase: true });
  root.resolveAll();
  return root;
}

const strip = (n: string) => n.replace(/^\./, '');

/** Renders our protos in the reference list's line format. */
function describeRoot(root: protobuf.Root): Set<string> {
  const lines = new Set<string>();
  const visit = (ns: protobuf.NamespaceBase) => {
    for (const child of ns.nestedArray) {
      if (child instanceof protobuf.Type) {
        for (const f of child.fieldsArray) {
          const typeName = f.resolvedType ? strip(f.resolvedType.fullName) : f.type;
          let label = f.repeated ? ' repeated' : '';
          if (f instanceof protobuf.MapField) label = ` map<${f.keyType},${typeName}>`;
          lines.add(`${strip(child.fullName)}.${f.name} = ${f.id} ${typeName}${label}`);
        }
        visit(child);
      } else if (child instanceof protobuf.Enum) {
        for (const [k, v] of Object.entries(child.values)) lines.add(`${strip(child.fullName)}.${k} = ${v}`);
      } else if (child instanceof protobuf.Service) {
        for (const m of child.methodsArray) {
          const req = `${m.requestStream ? 'stream ' : ''}${strip(m.resolvedRequestType!.fullName)}`;
          const res = `${m.responseStream ? 'stream ' : ''}${strip(m.resolvedResponseType!.fullName)}`;
          lines.add(`${strip(child.fullName)}/${m.name} (${req}) -> (${res})`);
        }
      } else if (child instanceof protobuf.Namespace) {
        visit(child);
      }
    }
  };
  visit(root);
  return lines;
}

describe('protos', () => {
  const ours = describeRoot(loadRoot());

  test('the reference list is non-trivial', () => {
    expect(facts.length).toBeGreaterThan(300);
  });

  test.each(facts)('%s', (line) => {
    expect(ours.has(line)).toBe(true);
  });

  test('declare nothing the reference list lacks', () => {
    const known = new Set(facts);
    expect([...ours].filter((l) => !known.has(l))).toEqual([]);
  });

  test('use package inference and service GRPCInferenceService', () => {
    const root = loadRoot();
    expect(root.lookupService('inference.GRPCInferenceService').methodsArray.map((m) => m.name)).toEqual(
      expect.arrayContaining([
        'ServerLive',
        'ServerReady',
        'ServerMetadata',
        'ModelReady',
        'ModelMetadata',
        'ModelConfig',
        'ModelStatistics',
        'ModelInfer',
        'ModelStreamInfer',
        'RepositoryIndex',
        'RepositoryModelLoad',
        'RepositoryModelUnload',
      ]),
    );
  });

  test('the parameter unions are oneofs named as in Triton', () => {
    const root = loadRoot();
    expect(Object.keys(root.lookupType('inference.InferParameter').oneofs ?? {})).toEqual([
      'parameter_choice',
    ]);
    expect(Object.keys(root.lookupType('inference.ModelRepositoryParameter').oneofs ?? {})).toEqual([
      'parameter_choice',
    ]);
    expect(root.lookupType('inference.ModelConfig').oneofs?.scheduling_choice.oneof).toEqual([
      'dynamic_batching',
      'sequence_batching',
      'ensemble_scheduling',
    ]);
  });
});
