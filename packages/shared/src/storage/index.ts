import { mkdir } from 'node:fs/promises';
import type { StorageConfig } from '../config.ts';
import { FsStorage } from './fs.ts';
import type { ObjectStorage } from './types.ts';

export * from './types.ts';
export { FsStorage } from './fs.ts';

/** The configured driver. The S3 one is imported only when chosen (the AWS SDK takes a while to load). */
export async function createStorage(config: StorageConfig): Promise<ObjectStorage> {
  if (config.driver === 's3') {
    const { S3Storage } = await import('./s3.ts');
    return new S3Storage(config.s3!);
  }
  const storage = new FsStorage(config.dataDir);
  await mkdir(storage.root, { recursive: true });
  return storage;
}
