import { status as GrpcStatus } from '@grpc/grpc-js';
import type {
  ModelConfigJson,
  ModelIndexEntry,
  ModelInferRequest,
  ModelInferResponse,
  ModelMetadata,
  ModelStatistics,
  TritonControl,
} from '../../src/triton';
import { TritonError } from '../../src/triton';

interface FakeModel {
  state: 'LOADING' | 'READY' | 'UNLOADING' | 'UNAVAILABLE';
  bytes: number;
}

/**
 * A hand-written TritonControl for unit tests of the lifecycle and admission: models live in a map, GPU
 * memory is a number, and loads and unloads finish when the test says so (gates) or at once. It keeps
 * Triton's rules the lifecycle relies on: a load that does not fit fails with Triton's out-of-memory text,
 * an unload returns before it finishes (RepositoryIndex shows UNLOADING until then), inference on an
 * unknown model is NOT_FOUND.
 */
export class FakeTriton implements TritonControl {
  readonly models = new Map<string, FakeModel>();
  readonly calls: string[] = [];
  /** GPU bytes each model takes when loaded (default `defaultBytes`). */
  readonly sizes = new Map<string, number>();
  /** Fill ModelStatistics.memory_usage with each model's bytes. */
  reportMemoryUsage = false;
  private readonly loadGates = new Map<string, Promise<void>[]>();
  private readonly failures = new Map<string, string[]>();
  private unloadGate: Promise<void> | undefined;

  constructor(
    public totalBytes: number,
    public defaultBytes = 10,
  ) {}

  usedBytes(): number {
    let used = 0;
    for (const m of this.models.values()) if (m.state !== 'UNAVAILABLE') used += m.bytes;
    return used;
  }

  loaded(): string[] {
    return [...this.models]
      .filter(([, m]) => m.state === 'READY')
      .map(([n]) => n)
      .sort();
  }

  /** The next load of `name` waits until the returned function is called. */
  holdNextLoad(name: string): () => void {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const gates = this.loadGates.get(name) ?? [];
    gates.push(gate);
    this.loadGates.set(name, gates);
    return release;
  }

  /** Every unload stays UNLOADING until the returned function is called. */
  holdUnloads(): () => void {
    let release!: () => void;
    this.unloadGate = new Promise<void>((r) => (release = r));
    return () => {
      this.unloadGate = undefined;
      release();
    };
  }

  failNextLoad(name: string, message: string): void {
    const f = this.failures.get(name) ?? [];
    f.push(message);
    this.failures.set(name, f);
  }

  count(call: string): number {
    return this.calls.filter((c) => c === call).length;
  }

  async serverLive(): Promise<boolean> {
    return true;
  }
  async serverReady(): Promise<boolean> {
    return true;
  }
  async modelReady(name: string): Promise<boolean> {
    return this.models.get(name)?.state === 'READY';
  }
  async modelMetadata(name: string): Promise<ModelMetadata> {
    this.ready(name, 'ModelMetadata');
    const t = { name: 'INPUT0', datatype: 'INT32', shape: [1] };
    return { name, versions: ['1'], platform: 'python', inputs: [t], outputs: [{ ...t, name: 'OUTPUT0' }] };
  }
  async modelConfig(name: string): Promise<ModelConfigJson> {
    this.ready(name, 'ModelConfig');
    return { name, max_batch_size: 0 };
  }
  async modelStatistics(name = ''): Promise<ModelStatistics[]> {
    const m = this.models.get(name);
    if (!m || m.state !== 'READY') return [];
    return [
      {
        name,
        version: '1',
        last_inference: 0,
        inference_count: 0,
        execution_count: 0,
        memory_usage: this.reportMemoryUsage ? [{ type: 'GPU', id: 0, byte_size: m.bytes }] : [],
      },
    ];
  }
  async repositoryIndex(): Promise<ModelIndexEntry[]> {
    return [...this.models].map(([name, m]) => ({ name, version: '1', state: m.state, reason: '' }));
  }

  async load(name: string): Promise<void> {
    this.calls.push(`load:${name}`);
    const bytes = this.sizes.get(name) ?? this.defaultBytes;
    this.models.set(name, { state: 'LOADING', bytes: 0 });
    const gate = this.loadGates.get(name)?.shift();
    if (gate) await gate;
    const failure = this.failures.get(name)?.shift();
    if (failure) {
      this.models.set(name, { state: 'UNAVAILABLE', bytes: 0 });
      throw new TritonError('RepositoryModelLoad', GrpcStatus.INVALID_ARGUMENT, failure, { names: [name] });
    }
    if (this.usedBytes() + bytes > this.totalBytes) {
      this.models.set(name, { state: 'UNAVAILABLE', bytes: 0 });
      throw new TritonError(
        'RepositoryModelLoad',
        GrpcStatus.INVALID_ARGUMENT,
        `load failed for model '${name}': version 1 is at UNAVAILABLE state: Internal: CUDA out of memory`,
        { names: [name] },
      );
    }
    this.models.set(name, { state: 'READY', bytes });
  }

  async unload(name: string): Promise<void> {
    this.calls.push(`unload:${name}`);
    const m = this.models.get(name);
    if (!m || m.state === 'UNAVAILABLE') return;
    m.state = 'UNLOADING';
    const finish = () => {
      m.state = 'UNAVAILABLE';
      m.bytes = 0;
    };
    if (this.unloadGate) void this.unloadGate.then(finish);
    else finish();
  }

  async infer(request: ModelInferRequest): Promise<ModelInferResponse> {
    this.calls.push(`infer:${request.model_name}`);
    this.ready(request.model_name, 'ModelInfer');
    return {
      model_name: request.model_name,
      model_version: '1',
      id: request.id ?? '',
      parameters: {},
      outputs: [{ name: 'OUTPUT0', datatype: 'INT32', shape: [1], parameters: {} }],
      raw_output_contents: request.raw_input_contents ?? [],
    };
  }

  /** Triton restarted: every model is gone. */
  restart(): void {
    this.models.clear();
  }

  close(): void {}

  private ready(name: string, rpc: string): void {
    if (this.models.get(name)?.state !== 'READY')
      throw new TritonError(rpc, GrpcStatus.NOT_FOUND, `Request for unknown model: '${name}' is not found`);
  }
}
