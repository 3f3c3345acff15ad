/**
 * A closed loop: `concurrency` clients, each starting its next request when the previous one ended, until
 * `total` requests have been started. Bounded by construction: it always stops after `total`.
 */
export async function closedLoop<T>(concurrency: number, total: number, fn: (i: number) => Promise<T>) {
  const results: T[] = new Array(total);
  let next = 0;
  const t0 = performance.now();
  const client = async () => {
    for (;;) {
      const i = next++;
      if (i >= total) return;
      results[i] = await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, client));
  return { results, wallMs: performance.now() - t0 };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
