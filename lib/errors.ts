/** Stable error codes that cross every hop unchanged (SPEC §4). */
export const Code = {
  BadRequest: "BAD_REQUEST",
  UnknownOp: "UNKNOWN_OP",
  UnknownId: "UNKNOWN_ID",
  InvalidTopic: "INVALID_TOPIC",
  MessageTooLarge: "MESSAGE_TOO_LARGE",
  FrameTooLarge: "FRAME_TOO_LARGE",
  AuthFailed: "AUTH_FAILED",
  VersionMismatch: "VERSION_MISMATCH",
  Unavailable: "UNAVAILABLE",
  Internal: "INTERNAL",
  /** Added to the SPEC §4 list: the server could not write or fsync (disk full, I/O error). Nothing was acknowledged. */
  StorageError: "STORAGE_ERROR",
  /** Added to the SPEC §4 list: a configured limit (ids per broker, subscriptions per id, requests in flight, topics) was reached. Retry after freeing some, or raise the limit. */
  LimitExceeded: "LIMIT_EXCEEDED",
  /**
   * Added to the SPEC §4 list: a local broker with this identity and secret is connected and
   * answering already (a copied data directory); this one is refused, not swapped in.
   */
  IdentityInUse: "IDENTITY_IN_USE",
} as const;
export type Code = (typeof Code)[keyof typeof Code];

const codes = new Set<string>(Object.values(Code));
export function isCode(value: unknown): value is Code {
  return typeof value === "string" && codes.has(value);
}

/**
 * The one error type that crosses the wire: `code` is what callers branch on,
 * `fatal` means the connection is closed after the error frame is sent.
 */
export class MqError extends Error {
  readonly code: Code;
  readonly fatal: boolean;
  /**
   * The request reached no server (the local broker had none to send it to, or was stopping):
   * nothing of it took effect. False when it may have: a publish may then have been stored.
   */
  readonly unsent: boolean;
  constructor(code: Code, message: string, options: { fatal?: boolean; cause?: unknown; unsent?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "MqError";
    this.code = code;
    this.fatal = options.fatal ?? false;
    this.unsent = options.unsent ?? false;
  }
}

/** Turns anything thrown into an MqError; unknown failures become INTERNAL (the cause stays for the log). */
export function toMqError(err: unknown): MqError {
  if (err instanceof MqError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new MqError(Code.Internal, `internal error: ${message}`, { cause: err });
}
