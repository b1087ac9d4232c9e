import { checkModelName } from './model-name';
import { newRecord, type ModelRecord } from './model-record';
import { TritonNameBook } from './triton-names';

/**
 * Every registered MME name, found by name or by the TargetModel it was loaded with, listed in a stable
 * order (sorted once per change, not once per page). Triton names are claimed here, so no two names share one.
 */
export class Catalogue {
  private readonly records = new Map<string, ModelRecord>();
  private readonly byTarget = new Map<string, ModelRecord>();
  private readonly tritonNames = new TritonNameBook();
  private sorted: ModelRecord[] | undefined;

  get size(): number {
    return this.records.size;
  }

  has(name: string): boolean {
    return this.records.has(name);
  }

  /** A record by MME name, or by the TargetModel it was loaded with. */
  get(nameOrTarget: string): ModelRecord | undefined {
    return this.records.get(nameOrTarget) ?? this.byTarget.get(nameOrTarget);
  }

  values(): IterableIterator<ModelRecord> {
    return this.records.values();
  }

  list(): ModelRecord[] {
    this.sorted ??= [...this.records.values()].sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
    );
    return this.sorted;
  }

  /** Registers a new name (checked: well-formed, no control characters) with a Triton name of its own. */
  add(fields: {
    name: string;
    url: string;
    targetModel: string | undefined;
    lazy: boolean;
    now: number;
  }): ModelRecord {
    checkModelName(fields.name, 'model name');
    if (this.records.has(fields.name)) throw new Error(`model '${fields.name}' is already registered`);
    const record = newRecord({ ...fields, tritonName: this.tritonNames.claim(fields.name) });
    this.records.set(record.name, record);
    if (record.targetModel) this.byTarget.set(record.targetModel, record);
    this.sorted = undefined;
    return record;
  }

  remove(record: ModelRecord): void {
    record.registered = false;
    if (this.records.get(record.name) !== record) return;
    this.records.delete(record.name);
    this.tritonNames.release(record.name);
    if (record.targetModel && this.byTarget.get(record.targetModel) === record)
      this.byTarget.delete(record.targetModel);
    this.sorted = undefined;
  }
}
