/**
 * The `mq` package: the client library. Needs the Bun runtime (docs/library.md says why);
 * under Node, package.json sends `import "mq"` to `node.cjs`, which fails with a clear error.
 *
 *     import { connect } from "mq";
 *     await using mq = await connect();
 */
export { connect, MqClient, type ConnectOptions, type PublishOptions, type Received, type SubResult } from "./client.ts";
export { Message } from "./message.ts";
export { Code, MqError, isCode } from "../errors.ts";
export type { From, PubResult, TopicInfo } from "../wire/messages.ts";
export type { LocalStats, ServerStats } from "../metrics.ts";
