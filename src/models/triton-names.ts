import { tritonNameFor } from '../artifacts';
import { AgentError, ErrorCode } from '../errors';

/** Hash lengths tried in turn: the readable short form, then the full SHA-256. */
const HASH_CHARS = [12, 64] as const;

/**
 * Which MME name holds each Triton name. Names are derived by hashing, but a derived name is only handed
 * out after checking that no other accepted name holds it, so two names can never share a Triton model —
 * even under a (48-bit) hash collision, when the full hash is used instead.
 */
export class TritonNameBook {
  private readonly holders = new Map<string, string>();
  private readonly byModel = new Map<string, string>();

  constructor(private readonly derive: (name: string, hashChars: number) => string = tritonNameFor) {}

  /** The Triton name for `model`, claimed for it until `release`. */
  claim(model: string): string {
    const held = this.byModel.get(model);
    if (held !== undefined) return held;
    for (const chars of HASH_CHARS) {
      const t = this.derive(model, chars);
      if (!this.holders.has(t)) {
        this.holders.set(t, model);
        this.byModel.set(model, t);
        return t;
      }
    }
    throw new AgentError(ErrorCode.Internal, `no free Triton name for model '${model}'`);
  }

  release(model: string): void {
    const t = this.byModel.get(model);
    if (t === undefined) return;
    this.byModel.delete(model);
    this.holders.delete(t);
  }

  /** The MME name holding a Triton name, if any. */
  holder(tritonName: string): string | undefined {
    return this.holders.get(tritonName);
  }
}
