import type { Readable } from 'node:stream';

/** What a source says about an artifact before fetching it. */
export interface ArtifactInfo {
  /** The URL as the caller gave it. */
  url: string;
  /** A directory used in place (SageMaker's extracted models) or an archive to fetch and unpack. */
  kind: 'directory' | 'archive';
  /** Local path of a directory artifact. */
  path?: string;
  /** Archive bytes (0 for directories). */
  size: number;
  /** Changes whenever the artifact changes: the ETag for S3, mtime and size for files. */
  version: string;
  /** The S3 ETag as the store sent it (quoted when strong, `W/"…"` when weak), when it sends one. */
  etag?: string;
  /** The S3 object version (versioned buckets), when the store gives one: downloads read exactly it. */
  versionId?: string;
}

/** Where artifacts come from: one implementation per URL scheme. */
export interface ArtifactSource {
  /** True when this source understands `url`. */
  handles(url: string): boolean;
  /** Looks the artifact up without fetching it; rejects with ARTIFACT_NOT_FOUND when it does not exist. */
  describe(url: string): Promise<ArtifactInfo>;
  /** Streams an archive's bytes (resuming after dropped connections where the source can). */
  open(info: ArtifactInfo): Promise<Readable>;
}
