/** A failure the user can act on: printed as one line (`chorus: <message>`), exit status 1. */
export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}
