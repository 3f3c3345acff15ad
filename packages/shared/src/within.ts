/**
 * Resolves true when `p` settled (either way) within `ms`, false otherwise. Shutdown steps wait on Redis, and a
 * node that died without a reset, or a Cluster slot between primaries, can leave a close or QUIT unanswered.
 */
export function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.then(() => true, () => true),
    new Promise<boolean>((r) => {
      timer = setTimeout(() => r(false), ms);
      timer.unref();
    }),
  ]).finally(() => clearTimeout(timer));
}
